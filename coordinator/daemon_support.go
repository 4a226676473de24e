package coordinator

import "github.com/shadowbench/shadowbench/vss"

// Failure returns what SetWriterFailure or SetWriterFailureEx recorded for
// the event so far: the writer code, the application code and the message;
// ok is false when nothing was recorded. A writer that runs an event on
// behalf of another process (the daemon's remote writers, whose callbacks
// run in the attached client) reads the answer with it and hands it on.
func (ev *Event) Failure() (hr, app vss.HRESULT, msg string, ok bool) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.failure == nil {
		return 0, 0, "", false
	}
	return ev.failure.hr, ev.failure.app, ev.failure.msg, true
}
