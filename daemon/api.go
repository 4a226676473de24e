package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/vss"
)

// maxBody bounds a request body: every request is a few fields.
const maxBody = 1 << 20

// maxPollWait bounds a remote writer's long poll.
const maxPollWait = time.Minute

// routes is the API. Every answer is JSON, errors included (ErrorBody).
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, fn func(*http.Request) (int, any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { d.serve(w, r, fn, false) })
	}
	// long routes may work past the write timeout: a whole snapshot set,
	// the management calls that go to providers (each bounded by
	// windows.provider), a writer's long poll.
	long := func(pattern string, fn func(*http.Request) (int, any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { d.serve(w, r, fn, true) })
	}
	handle("GET /v1/status", func(*http.Request) (int, any, error) { return http.StatusOK, d.status(), nil })

	handle("GET /v1/luns", func(*http.Request) (int, any, error) { return http.StatusOK, d.luns(), nil })
	handle("POST /v1/luns", func(r *http.Request) (int, any, error) {
		var req CreateLUNRequest
		if err := decode(r, &req, true); err != nil {
			return 0, nil, err
		}
		info, err := d.createLUN(req)
		return http.StatusCreated, info, err
	})
	handle("GET /v1/luns/{name}", func(r *http.Request) (int, any, error) {
		l, err := d.lunByName(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, d.lunInfo(l), nil
	})
	handle("DELETE /v1/luns/{name}", func(r *http.Request) (int, any, error) {
		force, err := boolParam(r, "force")
		if err != nil {
			return 0, nil, err
		}
		res, err := d.deleteLUN(r.Context(), r.PathValue("name"), force)
		return http.StatusOK, res, err
	})
	handle("POST /v1/luns/{name}/powercut", func(r *http.Request) (int, any, error) {
		var req PowerCutRequest
		if err := decode(r, &req, false); err != nil {
			return 0, nil, err
		}
		res, err := d.powerCut(r.Context(), r.PathValue("name"), req)
		return http.StatusOK, res, err
	})
	handle("GET /v1/luns/{name}/crashpoints", func(r *http.Request) (int, any, error) {
		pts, err := d.crashPoints(r.PathValue("name"))
		return http.StatusOK, pts, err
	})
	handle("POST /v1/luns/{name}/marks", func(r *http.Request) (int, any, error) {
		var req MarkRequest
		if err := decode(r, &req, true); err != nil {
			return 0, nil, err
		}
		p, err := d.mark(r.PathValue("name"), req.Label)
		return http.StatusCreated, p, err
	})
	handle("POST /v1/luns/{name}/crashpoints/{id}/expose", func(r *http.Request) (int, any, error) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || id < 1 {
			return 0, nil, badRequest("crash point %q: want its number, from lun crashpoints", r.PathValue("id"))
		}
		var req ExposePointRequest
		if err := decode(r, &req, false); err != nil {
			return 0, nil, err
		}
		info, err := d.exposePoint(r.PathValue("name"), id, req)
		return http.StatusCreated, info, err
	})
	handle("GET /v1/luns/{name}/faults", func(r *http.Request) (int, any, error) {
		res, err := d.faults(r.PathValue("name"))
		return http.StatusOK, res, err
	})
	handle("POST /v1/luns/{name}/faults", func(r *http.Request) (int, any, error) {
		var rule FaultRule
		if err := decode(r, &rule, true); err != nil {
			return 0, nil, err
		}
		res, err := d.addFault(r.PathValue("name"), rule)
		return http.StatusCreated, res, err
	})
	handle("DELETE /v1/luns/{name}/faults", func(r *http.Request) (int, any, error) {
		res, err := d.clearFaults(r.PathValue("name"))
		return http.StatusOK, res, err
	})

	handle("GET /v1/volumes", func(*http.Request) (int, any, error) { return http.StatusOK, d.svc.Volumes(), nil })

	handle("GET /v1/sets", func(*http.Request) (int, any, error) { return http.StatusOK, d.sets(), nil })
	long("POST /v1/sets", func(r *http.Request) (int, any, error) {
		var req CreateSetRequest
		if err := decode(r, &req, true); err != nil {
			return 0, nil, err
		}
		rep, err := d.createSet(r.Context(), req)
		if err != nil && rep != nil {
			err = &setError{err: err, rep: rep}
		}
		return http.StatusCreated, rep, err
	})
	handle("GET /v1/sets/current", func(*http.Request) (int, any, error) {
		p, err := d.progress()
		return http.StatusOK, p, err
	})
	handle("GET /v1/sets/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		rep, err := d.setReport(id)
		return http.StatusOK, rep, err
	})
	long("DELETE /v1/sets/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		res, err := d.deleteSet(r.Context(), id)
		return http.StatusOK, res, err
	})
	long("POST /v1/sets/{id}/break", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		var req BreakRequest
		if err := decode(r, &req, false); err != nil {
			return 0, nil, err
		}
		res, err := d.breakSet(r.Context(), id, req)
		return http.StatusOK, res, err
	})

	handle("GET /v1/snapshots", func(*http.Request) (int, any, error) {
		out := []SnapshotInfo{}
		for _, p := range d.svc.Query() {
			out = append(out, d.snapshotInfo(p))
		}
		return http.StatusOK, out, nil
	})
	handle("GET /v1/snapshots/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		p, err := d.snapshot(id)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, d.snapshotInfo(p), nil
	})
	handle("GET /v1/snapshots/{id}/diff", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		var against *vss.ID
		if s := r.URL.Query().Get("against"); s != "" {
			a, err := vss.ParseID(s)
			if err != nil {
				return 0, nil, badRequest("against %q: want a snapshot ID such as {9593A157-44E9-4344-BBEB-44FBF9B06B10}", s)
			}
			against = &a
		}
		res, err := d.diff(id, against)
		return http.StatusOK, res, err
	})
	long("DELETE /v1/snapshots/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		res, err := d.deleteSnapshot(r.Context(), id)
		return http.StatusOK, res, err
	})
	long("POST /v1/snapshots/{id}/expose", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		res, err := d.expose(r.Context(), id)
		return http.StatusOK, res, err
	})
	long("POST /v1/snapshots/{id}/revert", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		force, err := boolParam(r, "force")
		if err != nil {
			return 0, nil, err
		}
		res, err := d.revert(r.Context(), id, force)
		return http.StatusOK, res, err
	})

	handle("GET /v1/writers", func(*http.Request) (int, any, error) { return http.StatusOK, d.writers(), nil })
	handle("POST /v1/writers", func(r *http.Request) (int, any, error) {
		var reg WriterRegistration
		if err := decode(r, &reg, true); err != nil {
			return 0, nil, err
		}
		info, err := d.registerRemote(reg)
		if err == nil {
			d.log.Info("remote writer attached", "writer", info.Name, "id", info.ID.String(), "ephemeral", info.Ephemeral)
		}
		return http.StatusCreated, info, err
	})
	handle("GET /v1/writers/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		info, err := d.writerInfo(id)
		return http.StatusOK, info, err
	})
	handle("DELETE /v1/writers/{id}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		info, err := d.dropWriter(id, "")
		return http.StatusOK, info, err
	})
	long("GET /v1/writers/{id}/events", d.poll)
	long("GET /v1/writers/{id}/link", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		rw, err := d.remote(id)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusNoContent, nil, rw.link(r.Context())
	})
	handle("POST /v1/writers/{id}/events/{event}", func(r *http.Request) (int, any, error) {
		id, err := pathID(r)
		if err != nil {
			return 0, nil, err
		}
		var a EventAnswer
		if err := decode(r, &a, true); err != nil {
			return 0, nil, err
		}
		rw, err := d.remote(id)
		if err != nil {
			return 0, nil, err
		}
		if err := rw.answer(r.PathValue("event"), a); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]string{"accepted": r.PathValue("event")}, nil
	})

	mux.Handle("GET /metrics", d.metrics.handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := mux.Handler(probe); p != "/" && p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, ErrorBody{Error: fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))})
			return
		}
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("%s %s: no such route", r.Method, r.URL.Path)})
	})
	return mux
}

// poll is GET /v1/writers/{id}/events?wait=DURATION: the next event of a
// remote writer, or 204 when none came within the wait.
func (d *Daemon) poll(r *http.Request) (int, any, error) {
	id, err := pathID(r)
	if err != nil {
		return 0, nil, err
	}
	wait := 20 * time.Second
	if s := r.URL.Query().Get("wait"); s != "" {
		if wait, err = time.ParseDuration(s); err != nil || wait < 0 {
			return 0, nil, badRequest("wait %q: want a duration such as 20s", s)
		}
	}
	// A poll never outlasts half the silence after which the daemon drops
	// a writer, so a client that polls back to back is never dropped.
	wait = min(wait, maxPollWait, d.remoteTimeout()/2)
	rw, err := d.remote(id)
	if err != nil {
		return 0, nil, err
	}
	ev, err := rw.next(r.Context(), wait)
	if err != nil {
		return 0, nil, err
	}
	if ev == nil {
		return http.StatusNoContent, nil, nil
	}
	return http.StatusOK, ev, nil
}

// setError is a failed set: the error, and the report the body carries.
type setError struct {
	err error
	rep *SetReport
}

func (e *setError) Error() string { return e.err.Error() }
func (e *setError) Unwrap() error { return e.err }

// serve runs one handler: it refuses requests once shutdown has begun,
// reads the body within the read timeout, contains panics, and writes the
// answer or the error as JSON. For a long request the connection's read
// and write deadlines are lifted once the body is in, so that neither
// ends the work (a read deadline that passes cancels the request's
// context), and the answer gets the write timeout of its own.
func (d *Daemon) serve(w http.ResponseWriter, r *http.Request, fn func(*http.Request) (int, any, error), long bool) {
	if !d.handlers.enter() {
		writeJSON(w, http.StatusServiceUnavailable, errorBody(ErrStopping))
		return
	}
	defer d.handlers.leave()
	select {
	case <-d.stop:
		writeJSON(w, http.StatusServiceUnavailable, errorBody(ErrStopping))
		return
	default:
	}
	rc := http.NewResponseController(w)
	if err := d.readBody(rc, r); err != nil {
		writeJSON(w, statusOf(err), errorBody(err))
		return
	}
	if long {
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
	}
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("API handler panicked", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			writeJSON(w, http.StatusInternalServerError, ErrorBody{Error: fmt.Sprintf("internal error: %v", p)})
		}
	}()
	status, v, err := fn(r)
	if r.Method != http.MethodGet {
		d.saveSnapshots() // before the answer: what it reports is written down
	}
	if long {
		_ = rc.SetWriteDeadline(time.Now().Add(d.writeTimeout()))
	}
	if err != nil {
		body := errorBody(err)
		var se *setError
		if errors.As(err, &se) {
			body.Set = se.rep
		}
		code := statusOf(err)
		if r.Context().Err() != nil {
			return // the client went away; nobody reads the answer
		}
		if code >= 500 {
			d.log.Warn("API request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
		}
		writeJSON(w, code, body)
		return
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// readBody reads the request's body, at most maxBody+1 bytes (decode
// tells a larger one), before the handler runs: under the read timeout
// (a body that does not come in time is ErrRequestTimeout), and cut short
// when shutdown begins, so that a client that sent a header and no body
// holds shutdown no longer than it takes to answer 503.
func (d *Daemon) readBody(rc *http.ResponseController, r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	d.bodies.begin(rc)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	d.bodies.end(rc)
	switch {
	case err == nil:
		r.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	case d.stopping():
		return ErrStopping
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrRequestTimeout
	}
	return badRequest("reading the body: %v", err)
}

func (d *Daemon) stopping() bool {
	select {
	case <-d.stop:
		return true
	default:
		return false
	}
}

// bodyReads are the requests whose body is being read, so that shutdown
// can end the reads at once (by a read deadline in the past) instead of
// waiting for their timeout.
type bodyReads struct {
	mu    sync.Mutex
	cuts  bool
	reads map[*http.ResponseController]struct{}
}

func (b *bodyReads) begin(rc *http.ResponseController) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cuts {
		_ = rc.SetReadDeadline(time.Now())
		return
	}
	if b.reads == nil {
		b.reads = map[*http.ResponseController]struct{}{}
	}
	b.reads[rc] = struct{}{}
}

func (b *bodyReads) end(rc *http.ResponseController) {
	b.mu.Lock()
	delete(b.reads, rc)
	b.mu.Unlock()
}

// cut ends the reads in progress and those that begin from now on.
func (b *bodyReads) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cuts = true
	for rc := range b.reads {
		_ = rc.SetReadDeadline(time.Now())
	}
}

// decode reads a JSON body strictly: unknown fields, trailing data and
// a body over maxBody are bad requests. Without required, an empty body is
// the zero value.
func decode(r *http.Request, v any, required bool) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return badRequest("reading the body: %v", err)
	}
	if len(body) > maxBody {
		return badRequest("the body is larger than %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if required {
			return badRequest("the request needs a JSON body")
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("JSON body: data after the object")
	}
	return nil
}

// pathID reads the {id} of the path.
func pathID(r *http.Request) (vss.ID, error) {
	s := r.PathValue("id")
	id, err := vss.ParseID(s)
	if err != nil {
		return vss.ID{}, badRequest("ID %q: want a GUID such as {9593A157-44E9-4344-BBEB-44FBF9B06B10}", s)
	}
	return id, nil
}

// status is GET /v1/status.
func (d *Daemon) status() Status {
	st := Status{Version: d.version, Started: d.started, Uptime: Duration(time.Since(d.started).Round(time.Millisecond)),
		API: d.APIURLs(), NBD: []string{}, Volumes: d.svc.Volumes(), Writers: d.writers(), Sets: map[string]int{}}
	for _, a := range d.NBDAddrs() {
		if a.Network() == "unix" {
			st.NBD = append(st.NBD, "nbd+unix:///?socket="+a.String())
		} else {
			st.NBD = append(st.NBD, "nbd://"+a.String())
		}
	}
	for _, l := range d.array.List() {
		if u, ok := l.CacheUse(); ok {
			if st.Caches == nil {
				st.Caches = map[string]CacheUseInfo{}
			}
			st.Caches[l.Name()] = cacheUseInfo(u)
		}
		st.LUNs.Total++
		switch l.Kind() {
		case lun.Original:
			st.LUNs.Originals++
		case lun.Snapshot:
			st.LUNs.Snapshots++
		case lun.Clone:
			st.LUNs.Clones++
		}
	}
	ss := d.array.StoreStats()
	pv := d.array.Provisioned()
	st.Store = StoreInfo{DataBytes: ss.DataBytes, MetaBytes: ss.MetaBytes, CapacityBytes: ss.CapacityBytes,
		ThickBytes: pv.ThickBytes, ThinBytes: pv.ThinBytes}
	if ss.CapacityBytes > 0 {
		st.Store.Overcommit = float64(pv.ThickBytes+pv.ThinBytes) / float64(ss.CapacityBytes)
	}
	for _, p := range d.provs {
		cs := p.prov.CommitStats()
		st.Providers = append(st.Providers, ProviderInfo{ID: p.reg.ID, Name: p.reg.Name, Type: p.reg.Type.String(),
			Priority: p.reg.Priority, Profile: p.prov.Profile().Name, Commits: cs.Count,
			CommitP50: Duration(cs.P50), CommitP99: Duration(cs.P99)})
	}
	for _, ps := range d.provSrvs {
		for i := range st.Providers {
			if st.Providers[i].Name == ps.name {
				st.Providers[i].Listen = ps.ls.Addr().String()
			}
		}
	}
	for _, r := range d.remotes {
		st.Providers = append(st.Providers, ProviderInfo{ID: r.reg.ID, Name: r.reg.Name, Type: r.reg.Type.String(),
			Priority: r.reg.Priority, Remote: r.client.Addr()})
	}
	for _, s := range d.svc.Sets() {
		st.Sets[s.State]++
	}
	d.mu.Lock()
	st.Held = len(d.mu.sessions)
	d.mu.Unlock()
	return st
}

// tracker counts requests in flight so that shutdown can wait for them.
// Unlike a sync.WaitGroup it may be entered while it is waited on: a
// request that arrives once it is closed is refused.
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when closed and n is 0
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.closed && t.n == 0 {
		close(t.idle)
	}
}

// closeAndWait refuses new requests and waits for those in flight.
func (t *tracker) closeAndWait() {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		t.idle = make(chan struct{})
		if t.n == 0 {
			close(t.idle)
		}
	}
	idle := t.idle
	t.mu.Unlock()
	<-idle
}

// boolParam reads a query parameter that is true, false or absent.
func boolParam(r *http.Request, name string) (bool, error) {
	switch v := r.URL.Query().Get(name); v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		return false, badRequest("%s=%q: want true or false", name, v)
	}
}
