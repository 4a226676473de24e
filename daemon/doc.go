// Package daemon is shadowbench's control plane: the long-running process
// behind `shadowbench serve` and the client its other subcommands use.
//
// # Design
//
// A Daemon assembles, from a Config (a YAML file, strict, with serve's
// flags on top), what design.md's control plane names: a lun.Array with
// its LUNs, one emulated array provider per configured provider (each with
// its firmware profile, from a file or inline; one may also be served over
// the provider protocol, provider/wire, with flush & hold of this array's
// LUNs), the remote providers reached over that protocol (registered even
// while unreachable: their calls then fail as provider failures), a
// coordinator.Service with
// the configured writers (scripted, exec, fsfreeze) and volumes, the NBD
// server over the array, and an HTTP API on loopback or on a unix socket.
//
// The daemon is the requester of every snapshot set it creates: POST
// /v1/sets runs the whole conversation of vss-spec.md A.1-A.9
// (InitializeForBackup ... DoSnapshotSet, GatherWriterStatus,
// BackupComplete or AbortBackup) and answers with the set's snapshots,
// their NBD exports, the writers' status and the timeline. The requester
// of an auto-release set (VSS_CTX_BACKUP, FILE_SHARE_BACKUP) is held open,
// since releasing it deletes the snapshots (A.10): they live until the set
// is deleted or the daemon stops. Management calls (delete, expose,
// revert, break) each use a requester of their own.
//
// External programs take part in sets as remote writers. The daemon side
// is a coordinator.Writer whose callback hands the event to the attached
// client through a long poll (GET /v1/writers/{id}/events) and waits for
// the answer (POST /v1/writers/{id}/events/{event}) within the event's
// window. The client runs a local coordinator.Writer for it (an ExecWriter
// for `writer attach NAME -- CMD`, so the command sees the ExecWriter's
// environment and answers as it does) and hands back what the callback
// returned and what it recorded with SetWriterFailure. A long poll was
// chosen over a streaming response: each event and answer is one plain
// request, which any HTTP client (curl in a shell loop) can speak, and a
// lost response loses nothing, since a poll hands over the event in the
// slot until it is answered. `snapshot create --writer exec:CMD` uses the
// same path with ephemeral writers, which take part in that one set: the
// command runs in the client, as the user who typed it, rather than in the
// daemon, which would otherwise run any command any local user sent.
//
// Metrics (GET /metrics) come from a custom Prometheus collector that reads
// what the array, the NBD server and the providers already measure at
// scrape time (nbd keeps its own counters and knows nothing of
// Prometheus), and from histograms and counters the daemon fills from each
// finished set: its timeline, its result code, its writers' states.
// contrib/grafana/shadowbench.json is a dashboard of them, which
// TestDashboardMetricsExist checks against a real daemon.
//
// # Configuration
//
// testdata/daemon.yaml is a complete, commented configuration. Its keys:
// nbd (listen, socket, default-export, max-in-flight, max-connections,
// max-in-flight-bytes, request-timeout, shutdown-timeout),
// api (listen, socket, auth, token-file, read-timeout, write-timeout,
// idle-timeout, max-connections), array (data-dir, capacity, grain,
// max-snapshots, luns: name, size, block-size, read-only, thin, cache,
// cache-size, crash-points, serial, naa),
// providers (name, type, priority, profile: a file or inline, seed,
// listen; or remote, for one reached over the provider protocol),
// writers (name, level, freeze-timeout, and one of scripted, exec or
// fsfreeze), volumes (name, luns, provider: the remote provider whose
// array holds the LUNs), windows (hold, freeze, prepare,
// event, provider, remote-writer) and sets (history). Sizes are numbers
// or "1GiB"; durations are Go durations.
//
// # Capacity
//
// A LUN is thick unless it is thin (thin: true, --thin, thin=true in
// --lun, "thin": true over the API). A thick LUN is created only when the
// sizes of the array's thick LUNs, its own included, add up within the
// capacity; a thin one may overcommit it, as snapshot LUNs and clones do.
// Status gives what the LUNs provision and by how much it overcommits.
// A snapshot set the array has no room for answers
// VSS_E_INSUFFICIENT_STORAGE (see Daemon.shortage for the case the VSS
// service answers VSS_E_VOLUME_NOT_SUPPORTED).
//
// # Write caches and power cuts
//
// A LUN emulates a write cache when it names a mode (cache:, --cache,
// "cache" over the API) or, naming none, when the firmware profile of an
// array provider sets one (provider.CacheBehavior: the first such
// provider's, since every array provider serves every LUN); "none" opts
// out. In-memory arrays only: a durable array refuses both. lun powercut
// cuts at once; a power-cut fault rule (powerfault.go) cuts at the Nth
// matching operation or at a random instant in a window, once, and is
// then cleared. A LUN held by flush & hold is cut at once: the hold goes
// on, and the I/O queued at it fails with its dropped connection.
//
// # API
//
//	GET    /v1/status                        Status, with each write cache's use
//	GET    /v1/luns                          []LUNInfo
//	POST   /v1/luns                          LUNConfig -> LUNInfo
//	GET    /v1/luns/{name}                   LUNInfo, with faults, I/O statistics, cache use, last power cut
//	DELETE /v1/luns/{name}[?force=true]      DeleteResult (409 when in use, unless force)
//	GET    /v1/luns/{name}/faults            FaultList
//	POST   /v1/luns/{name}/faults            FaultRule -> FaultList (adds a rule; powercut arms a power cut)
//	DELETE /v1/luns/{name}/faults            FaultList (clears, disarming power cuts)
//	POST   /v1/luns/{name}/powercut          PowerCutRequest -> PowerCutResult
//	GET    /v1/luns/{name}/crashpoints       []CrashPointInfo
//	POST   /v1/luns/{name}/marks             MarkRequest -> CrashPointInfo
//	POST   /v1/luns/{name}/crashpoints/{id}/expose  ExposePointRequest -> LUNInfo
//	GET    /v1/volumes                       {volume: [LUN...]}
//	GET    /v1/sets                          []SetSummary
//	POST   /v1/sets                          CreateSetRequest -> SetReport (one whole backup)
//	GET    /v1/sets/{id}                     SetReport, with writers' status and timeline
//	DELETE /v1/sets/{id}                     DeleteResult
//	POST   /v1/sets/{id}/break               BreakRequest -> BreakResult
//	GET    /v1/snapshots                     []SnapshotInfo
//	GET    /v1/snapshots/{id}                SnapshotInfo
//	DELETE /v1/snapshots/{id}                DeleteResult
//	POST   /v1/snapshots/{id}/expose         ExposeResult
//	POST   /v1/snapshots/{id}/revert[?force=true]  RevertResult (409 while NBD clients have the volume open, unless force)
//	GET    /v1/writers                       []WriterInfo
//	POST   /v1/writers                       WriterRegistration -> WriterInfo
//	GET    /v1/writers/{id}                  WriterInfo
//	DELETE /v1/writers/{id}                  WriterInfo (detaches)
//	GET    /v1/writers/{id}/events?wait=20s  WireEvent, or 204 when none came
//	POST   /v1/writers/{id}/events/{event}   EventAnswer
//	GET    /metrics                          Prometheus text format
//
// IDs are GUIDs with or without braces. A failure answers an ErrorBody
// with a 4xx status for what the caller can fix (400 bad request, 404
// unknown object, 409 conflict, 410 an event that is over, 422 a volume
// or context no provider supports, 507 no space) and a 5xx one for what
// failed in the daemon (502 a provider's or writer's failure, 503 shutting
// down, 504 a window that expired); a set that failed after it started
// carries its report in the body's set field.
//
// # Invariants
//
//   - D1 The API is never offered to the network, nor to other local
//     users: TCP addresses must be on loopback, and every request over TCP
//     but those for /metrics carries the bearer token the daemon writes at
//     start to its token file (mode 0600, in $XDG_RUNTIME_DIR/shadowbench
//     unless api.token-file says otherwise), or is answered 401; api.auth
//     none lifts that, and the log says so. The unix socket needs no
//     token: it is created with mode 0600.
//   - D2 A remote writer never holds a sequence past the event's window:
//     the callback returns at the window's end, or at once when the writer
//     is detached or dropped, with the answer a detached writer gives (true
//     to Abort and BackupShutdown, a fatal NONRETRYABLE otherwise).
//   - D3 A remote writer whose client is silent (no poll, no answer, no
//     event in hand) for windows.remote-writer is dropped.
//   - D4 Run's shutdown stops accepting, releases remote writers, drains
//     the requests in flight (at most nbd.shutdown-timeout, then cancels
//     them), releases held requesters (deleting auto-release snapshots),
//     waits for the coordinator, and drains and flushes the NBD server.
//     Every goroutine it started has ended when it returns.
//   - D5 The I/O path carries no instrumentation for the metrics: they are
//     read from lun statistics, the NBD server's statistics and provider
//     histograms at scrape time.
//   - D6 A bad request changes nothing: bodies are decoded strictly (unknown
//     fields, trailing data, oversize bodies are refused) and checked
//     before any state changes; every error is JSON with the HRESULT's name
//     and value when there is one.
//   - D7 A unix socket (the API's or NBD's) that a killed daemon left
//     behind is removed at start once a connection to it is refused; one
//     another process listens on, or a file that is not a socket, is
//     refused and left alone.
//   - D8 No client holds the API: a request's header and body must
//     arrive within api.read-timeout (408 otherwise) and its answer leave
//     within api.write-timeout (a set, a management call reaching
//     providers and a long poll are bounded by their own windows), an
//     idle keep-alive connection is closed after api.idle-timeout, each
//     listener has at most api.max-connections open (past it 503 at once,
//     counted in /metrics), and shutdown ends the reads of bodies that
//     have not arrived instead of waiting for them.
package daemon
