#include "textflag.h"

// func streamCopyAVX(dst, src *byte, n int)
//
// Copies n bytes, n a positive multiple of 128, from src to dst, dst 32-byte
// aligned, with non-temporal stores. The caller fences (storeFence).
TEXT ·streamCopyAVX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
loop:
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VMOVNTDQ Y0, 0(DI)
	VMOVNTDQ Y1, 32(DI)
	VMOVNTDQ Y2, 64(DI)
	VMOVNTDQ Y3, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $128, CX
	JNZ loop
	VZEROUPPER
	RET

// func storeFenceSSE()
TEXT ·storeFenceSSE(SB), NOSPLIT, $0-0
	SFENCE
	RET
