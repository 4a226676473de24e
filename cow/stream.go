package cow

// Large writes copy their grains with non-temporal stores where the
// platform has them (amd64 with AVX, outside race builds): the data goes to
// memory without first reading each destination line into the cache and
// without evicting what the cache holds. A large write's destination is
// rarely cached anyway, and reading it in only to overwrite it is most of
// the cost of the copy: a megabyte written in place into 256 grains of
// a full 1 GiB volume takes 58-66 µs streamed and 152-161 µs with ordinary
// stores (BenchmarkWriteLarge, 2 cores, Intel Xeon). On an AMD EPYC
// (family 26), with other work on the machine, in place: 26-59 µs
// streamed against 43-63 µs; after a snapshot, where every grain is a
// fresh block, the spread between runs (208-793 µs either way) hid any
// difference. Nothing measured says the two parts want different
// choices, so streaming is not chosen by CPU vendor; haveStream follows
// the instruction set only. Small writes keep ordinary stores, since a
// block just written is often read again soon.

// streamMin is the smallest write whose full grains are streamed; a
// variable so that BenchmarkWriteLarge can compare.
var streamMin = 128 << 10

// put copies src to the start of dst, streaming the stores when asked to
// and able; the writer calls storeFence once it has put everything.
func put(dst, src []byte, stream bool) {
	if stream && streamCopy(dst, src) {
		return
	}
	copy(dst, src)
}
