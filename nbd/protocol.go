package nbd

import (
	"strconv"
	"strings"
)

// Wire constants of the fixed newstyle handshake, numbered as in the NBD
// protocol document (github.com/NetworkBlockDevice/nbd doc/proto.md).
const (
	magicInit        uint64 = 0x4e42444d41474943 // "NBDMAGIC"
	magicOption      uint64 = 0x49484156454F5054 // "IHAVEOPT"
	magicOptionReply uint64 = 0x0003e889045565a9
	magicRequest     uint32 = 0x25609513
	magicSimple      uint32 = 0x67446698
	magicStructured  uint32 = 0x668e33ef

	// Handshake flags (server) and client flags.
	hsFlagFixedNewstyle uint16 = 1 << 0
	hsFlagNoZeroes      uint16 = 1 << 1
	clFlagFixedNewstyle uint32 = 1 << 0
	clFlagNoZeroes      uint32 = 1 << 1

	// Options.
	optExportName     uint32 = 1
	optAbort          uint32 = 2
	optList           uint32 = 3
	optStartTLS       uint32 = 5
	optInfo           uint32 = 6
	optGo             uint32 = 7
	optStructured     uint32 = 8
	optListMetaCtx    uint32 = 9
	optSetMetaCtx     uint32 = 10
	optExtendedHeader uint32 = 11

	// Option reply types.
	repAck           uint32 = 1
	repServer        uint32 = 2
	repInfo          uint32 = 3
	repMetaContext   uint32 = 4
	repErrBit        uint32 = 1 << 31
	repErrUnsup      uint32 = repErrBit | 1
	repErrPolicy     uint32 = repErrBit | 2
	repErrInvalid    uint32 = repErrBit | 3
	repErrPlatform   uint32 = repErrBit | 4
	repErrTLSReqd    uint32 = repErrBit | 5
	repErrUnknown    uint32 = repErrBit | 6
	repErrShutdown   uint32 = repErrBit | 7
	repErrBlockSize  uint32 = repErrBit | 8
	repErrTooBig     uint32 = repErrBit | 9
	repErrExtHdrReqd uint32 = repErrBit | 10

	// Info types of NBD_OPT_INFO and NBD_OPT_GO.
	infoExport      uint16 = 0
	infoName        uint16 = 1
	infoDescription uint16 = 2
	infoBlockSize   uint16 = 3

	// Structured reply flags and types.
	replyFlagDone    uint16 = 1 << 0
	replyNone        uint16 = 0
	replyOffsetData  uint16 = 1
	replyOffsetHole  uint16 = 2
	replyBlockStatus uint16 = 5
	replyErrBit      uint16 = 1 << 15
	replyError       uint16 = replyErrBit | 1
	replyErrorOffset uint16 = replyErrBit | 2

	// Fixed message sizes.
	requestHeaderLen     = 28
	simpleHeaderLen      = 16
	structuredHeaderLen  = 20
	optionHeaderLen      = 16
	optionReplyHeaderLen = 20
	exportNameZeroesLen  = 124
)

// Protocol limits.
const (
	// MaxStringLen bounds every name and query string (the protocol's limit).
	MaxStringLen = 4096
	// MaxOptionLen bounds the data of one handshake option. Larger options
	// are answered NBD_REP_ERR_TOO_BIG and skipped, or close the connection
	// beyond discardLimit.
	MaxOptionLen = 64 << 10
	// DefaultMaxPayload is the default bound on a READ or WRITE length, the
	// largest block size the protocol lets a client assume.
	DefaultMaxPayload = 32 << 20
	// DefaultMaxInFlight is the default number of requests one connection
	// may have in flight.
	DefaultMaxInFlight = 16
)

// Metadata context names.
const (
	// MetaBaseAllocation is the protocol's allocation context: descriptors
	// carry StateHole and StateZero.
	MetaBaseAllocation = "base:allocation"
	// MetaChanged is shadowbench's changed-block tracking context:
	// descriptors carry StateChanged where the export differs from its base
	// image (for a snapshot LUN, the previous snapshot of its source).
	MetaChanged = "shadowbench:changed"
)

// Block status flags.
const (
	// StateHole marks an unallocated extent in base:allocation.
	StateHole uint32 = 1 << 0
	// StateZero marks an extent that reads as zeros in base:allocation.
	StateZero uint32 = 1 << 1
	// StateChanged marks an extent that differs from the base image in
	// shadowbench:changed.
	StateChanged uint32 = 1 << 0
)

// Command is a transmission request type.
type Command uint16

// Commands.
const (
	CmdRead        Command = 0
	CmdWrite       Command = 1
	CmdDisc        Command = 2
	CmdFlush       Command = 3
	CmdTrim        Command = 4
	CmdCache       Command = 5
	CmdWriteZeroes Command = 6
	CmdBlockStatus Command = 7
)

var commandNames = [...]string{"READ", "WRITE", "DISC", "FLUSH", "TRIM", "CACHE", "WRITE_ZEROES", "BLOCK_STATUS"}

func (c Command) String() string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	return "CMD(" + strconv.Itoa(int(c)) + ")"
}

// CmdFlags are the flags of one request.
type CmdFlags uint16

// Command flags.
const (
	// CmdFlagFUA asks that the command's writes be persistent before the reply.
	CmdFlagFUA CmdFlags = 1 << 0
	// CmdFlagNoHole asks WRITE_ZEROES to allocate rather than punch a hole.
	CmdFlagNoHole CmdFlags = 1 << 1
	// CmdFlagDF asks a structured READ to answer with one content chunk.
	CmdFlagDF CmdFlags = 1 << 2
	// CmdFlagReqOne asks BLOCK_STATUS for one descriptor per context.
	CmdFlagReqOne CmdFlags = 1 << 3
	// CmdFlagFastZero asks WRITE_ZEROES to fail with ENOTSUP rather than be
	// slower than a write.
	CmdFlagFastZero CmdFlags = 1 << 4
)

// TransmissionFlags describe an export to the client.
type TransmissionFlags uint16

// Transmission flags.
const (
	FlagHasFlags        TransmissionFlags = 1 << 0
	FlagReadOnly        TransmissionFlags = 1 << 1
	FlagSendFlush       TransmissionFlags = 1 << 2
	FlagSendFUA         TransmissionFlags = 1 << 3
	FlagRotational      TransmissionFlags = 1 << 4
	FlagSendTrim        TransmissionFlags = 1 << 5
	FlagSendWriteZeroes TransmissionFlags = 1 << 6
	FlagSendDF          TransmissionFlags = 1 << 7
	FlagCanMultiConn    TransmissionFlags = 1 << 8
	FlagSendResize      TransmissionFlags = 1 << 9
	FlagSendCache       TransmissionFlags = 1 << 10
	FlagSendFastZero    TransmissionFlags = 1 << 11
)

var transmissionFlagNames = [...]string{
	"HAS_FLAGS", "READ_ONLY", "SEND_FLUSH", "SEND_FUA", "ROTATIONAL", "SEND_TRIM",
	"SEND_WRITE_ZEROES", "SEND_DF", "CAN_MULTI_CONN", "SEND_RESIZE", "SEND_CACHE", "SEND_FAST_ZERO",
}

// String lists the set flags, e.g. "HAS_FLAGS|READ_ONLY".
func (f TransmissionFlags) String() string {
	var b strings.Builder
	for i := 0; i < 16; i++ {
		if f&(1<<i) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		if i < len(transmissionFlagNames) {
			b.WriteString(transmissionFlagNames[i])
		} else {
			b.WriteString("BIT" + strconv.Itoa(i))
		}
	}
	return b.String()
}
