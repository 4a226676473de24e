// Package nbd speaks the Network Block Device protocol
// (github.com/NetworkBlockDevice/nbd doc/proto.md): a server that exports
// the LUNs of an array, and a client for tests and load generation.
//
// # Server
//
// A Server finds exports in a Catalog each time a client names one, so a LUN
// created after the server started is reachable and a deleted one leaves
// NBD_OPT_LIST (its open connections then get EIO from the LUN, not a
// crash). An export is any Backend; *lun.LUN is one as it is, and
// ArrayCatalog exports the unmasked LUNs of a *lun.Array. Package gonbd
// adapts a LUN the other way, to go-nbd's backend.Backend.
//
// The handshake is fixed newstyle with NO_ZEROES. Options: EXPORT_NAME, INFO
// and GO (with the requested NBD_INFO_NAME, _DESCRIPTION and _BLOCK_SIZE),
// LIST (one NBD_REP_SERVER per export), ABORT, STRUCTURED_REPLY,
// LIST_META_CONTEXT and SET_META_CONTEXT, STARTTLS (served with crypto/tls
// when Options.TLSConfig is set, refused with NBD_REP_ERR_POLICY
// otherwise). Two metadata contexts exist: base:allocation, from the
// backend's extents, and shadowbench:changed (MetaChanged), offered by
// backends that implement ChangeTracker, whose descriptors carry
// StateChanged on the ranges that differ from the backend's base image (for
// a snapshot LUN, the previous snapshot of its source). Queries are exact
// names or a bare namespace ("base:", "shadowbench:").
//
// A connection in transmission with nothing in flight for IdleRelease
// (1 s) holds its socket and its serving goroutine only: it waits for the
// next request parked in the runtime's poller, without a buffer, and takes
// its workers, writer, request slots and socket buffers again when the
// client sends. Between requests a client may wait for ever; a request
// begun must arrive within RequestTimeout (30 s): its header from its
// first byte, a WRITE's payload from when the server reads it.
//
// While requests come, a connection runs MaxInFlight+1 workers, and one
// writer. The worker holding the reading turn validates a request before
// anything is allocated for it and reads a WRITE payload into a pooled
// buffer. When the client has sent nothing after it and nothing else is in
// flight, that worker runs the request and writes the reply itself, then
// reads on, so at queue depth 1 a request never changes goroutine and no
// other is woken; if the request takes longer than 20 µs, a timer passes
// the reading turn to another worker meanwhile. A WRITE of 256 KiB or more
// is run the same way, by the core that read its payload. Otherwise the
// request goes to the other workers and the reply to the writer, which sends replies in the order they finish (so out of order)
// and lets replies that finish together share one write. A fixed set of
// request slots is the in-flight bound: when all are taken reading stops,
// and the client's sends back up into TCP.
//
// With structured replies, a READ answers with data chunks for the data and
// hole chunks for zero runs of at least 4 KiB (one data chunk with
// NBD_CMD_FLAG_DF), and errors carry a message. Each READ is one read of
// the backend, holes included (HoleReader), so a read fault or a read
// statistic sees every READ once.
//
// A READ of a backend that reads without a copy (VecReader, as a LUN does)
// is sent from the grains themselves: ReadVec hands out slices of the
// blocks, pinned (cow.Vec), and the reply queues them by reference in the
// connection's write buffer (sendBuf), so the headers and the grains of a
// reply, and of the replies flushed with it, go out in one writev, and the
// kernel's copy into the socket is the only copy. Holes go out as hole
// chunks, or in a simple reply as slices of a shared zero page. A request
// keeps its pins, its payload memory and its slot until the flush that
// sends its reply has returned, so a block released and reused meanwhile
// (an image deleted while its grains are being sent) cannot change the
// bytes on the wire, and the payload budget bounds what is pinned as it
// bounds buffers. 1 MiB reads copied each grain into a buffer that bufio
// then wrote in two calls (its 64 KiB buffer, then the rest); sent from
// the grains, a 1 MiB read took 17-36% less server CPU in the runs the
// README reports.
//
// A durable LUN's blocks are slices of its data file's read-only mapping
// (cow/filestore), so the same writev copies from the page cache through
// the mapping, once, as sendfile would: sendfile and splice were not used
// because they take one call per run of blocks and a separate write for
// the headers, where one writev sends a whole reply and its neighbours,
// and because the mapping is already how the tree reads those blocks.
// A backend without VecReader is read into a pooled buffer, which is then
// sent by reference in the same way.
//
// BLOCK_STATUS looks at most
// 256 MiB and returns at most 16384 descriptors per context; the protocol
// lets a server answer less, and clients continue where the reply ends.
//
// # Invariants
//
//   - N1 Memory per connection is bounded: an option is at most MaxOptionLen
//     bytes, a name or query at most MaxStringLen, a READ or WRITE at most
//     MaxPayload, and at most MaxInFlight requests hold buffers at once.
//     Lengths are checked before anything is allocated. The payload
//     buffers of all connections together stay under MaxInFlightBytes,
//     and one connection's under MaxConnInFlightBytes: a request past
//     either waits for memory (in arrival order), it is never failed, and
//     a client that stops reading its replies holds only its own share.
//     A READ's pinned grains count as its payload, until its reply has
//     been sent.
//   - N2 The stream stays in step: a WRITE refused for any reason has its
//     payload read and discarded (up to 128 MiB; beyond, the connection is
//     closed), and every other request is answered exactly once.
//   - N3 No write lands outside its export: a range past the end answers
//     EINVAL (ENOSPC for WRITE and WRITE_ZEROES) and a write to a read-only
//     export answers EPERM, before the backend is called.
//   - N4 A protocol violation (bad magic, a truncated header, unknown client
//     flags) closes that one connection; the server serves the others.
//   - N5 A panic in a request handler answers EIO and is logged; it never
//     reaches the client or the server.
//   - N6 Every goroutine has an owner: Serve returns after the connections it
//     accepted are closed; Shutdown stops reading new requests, lets those
//     in flight finish and their replies go out, flushes each written export
//     and closes; Close does the same at once. A client that leaves without
//     NBD_CMD_DISC has its requests in flight cancelled.
//   - N7 Transmission flags are truthful: READ_ONLY on read-only exports and
//     no write-side flags there, SEND_DF only with structured replies,
//     HAS_FLAGS always.
//   - N8 Load never ends the server: an accept error is retried after a
//     pause (5 ms doubling to 1 s), and at most MaxConnections connections
//     are served at once; past that a new one is closed before the
//     greeting and counted, so the rest of the process keeps descriptors.
//   - N9 An idle connection costs its socket and one goroutine, whether it
//     is silent since connect, idle after the handshake or between
//     requests; a client that stops half-way through a request is
//     disconnected after RequestTimeout, and a handshake is bounded by
//     HandshakeTimeout.
//
// Server.Stats counts connections (open, accepted, refused), requests in
// flight, protocol violations, and per command the requests, errors,
// bytes and latencies (in buckets from 100 ns, with their exact sum), in
// shards of atomic counters so that connections on different cores write
// different cache lines; the daemon exports them as Prometheus metrics.
//
// Backend errors become protocol error values: a syscall.Errno (fault
// injection) keeps its value where the protocol defines it, the storage
// sentinels map by meaning (out of range EINVAL, no space ENOSPC, read-only
// EPERM, deleted EIO), and anything else is EIO.
//
// # Client
//
// Dial negotiates with NBD_OPT_GO (structured replies and metadata contexts
// when asked) and returns a Client whose methods many goroutines may call at
// once. Requests are multiplexed by handle over a fixed set of call slots;
// one reader goroutine reads replies straight into the callers' buffers; a
// caller whose context ends abandons its slot, and the reader drops the
// reply and frees the slot when it arrives. The fast path takes a slot,
// writes the request under one mutex (the last waiting sender flushes, so
// concurrent requests share a write) and waits on the slot's channel;
// nothing is allocated per request except block status results.
package nbd
