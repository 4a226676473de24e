package daemon

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/shadowbench/shadowbench/vss"
)

// Client talks to a daemon's API. Its methods are safe for concurrent use.
type Client struct {
	base  string // http://host:port, or http://unix for a socket
	addr  string // as given, for errors
	hc    *http.Client
	token string // the bearer token; "" for none
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithToken makes the client send token as its bearer token, which the
// TCP API asks for (ReadToken reads it from the daemon's token file).
func WithToken(token string) ClientOption { return func(c *Client) { c.token = token } }

// ResolveAPI returns the API address a client uses: flag when it is set,
// else $SHADOWBENCH_API, else DefaultAPI.
func ResolveAPI(flag string) string {
	return cmp.Or(flag, os.Getenv(EnvAPI), DefaultAPI)
}

// NewClient returns a client of the API at addr: "http://HOST:PORT",
// "HOST:PORT" or "unix:/PATH".
func NewClient(addr string, opts ...ClientOption) (*Client, error) {
	c := &Client{addr: addr}
	for _, o := range opts {
		o(c)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	switch {
	case strings.HasPrefix(addr, "unix:"):
		path := strings.TrimPrefix(strings.TrimPrefix(addr, "unix:"), "//")
		if path == "" {
			return nil, fmt.Errorf("%w: %q names no socket", ErrBadAPIAddress, addr)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://unix"
	default:
		u := addr
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "http" || pu.Host == "" || (pu.Path != "" && pu.Path != "/") {
			return nil, fmt.Errorf("%w: %q", ErrBadAPIAddress, addr)
		}
		c.base = "http://" + pu.Host
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// ClientFor returns a client of the API at addr as the CLI makes one: for
// a TCP address, with the token in tokenFile (resolved by
// ResolveTokenFile). A token file that is missing where no flag or
// variable named it is no error: a daemon with api.auth none writes
// none, and one that wants a token says so.
func ClientFor(addr, tokenFile string) (*Client, error) {
	if IsUnix(addr) {
		return NewClient(addr)
	}
	named := cmp.Or(tokenFile, os.Getenv(EnvAPITokenFile)) != ""
	path, err := ResolveTokenFile(tokenFile)
	if err != nil {
		return nil, err
	}
	token, err := ReadToken(path)
	switch {
	case err == nil:
		return NewClient(addr, WithToken(token))
	case errors.Is(err, fs.ErrNotExist) && !named:
		return NewClient(addr)
	}
	return nil, err
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// do sends a request with in as its JSON body (none when nil) and decodes
// the answer into out (ignored when nil). It returns the status; a failed
// request is an *APIError.
func (c *Client) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("%w: %s: %w", ErrUnreachable, c.addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("daemon: reading the answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return resp.StatusCode, apiError(resp.StatusCode, data)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("daemon: the answer to %s %s is not what this client expects (another version?): %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// authorize adds the bearer token, if the client has one.
func (c *Client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// IsUnix reports whether addr names a unix socket, which needs no token.
func IsUnix(addr string) bool { return strings.HasPrefix(addr, "unix:") }

// apiError decodes an error body.
func apiError(status int, data []byte) error {
	var b ErrorBody
	e := &APIError{Status: status}
	if json.Unmarshal(data, &b) != nil {
		e.Message = fmt.Sprintf("daemon: HTTP %d: %s", status, strings.TrimSpace(string(data)))
		return e
	}
	e.Message, e.Set = b.Error, b.Set
	if b.HRESULT != "" {
		e.HRESULT, _ = vss.ParseHRESULT(b.HRESULT)
	}
	return e
}

func idPath(prefix string, id vss.ID, suffix string) string {
	return prefix + url.PathEscape(strings.Trim(id.String(), "{}")) + suffix
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (st Status, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// LUNs lists the array's LUNs.
func (c *Client) LUNs(ctx context.Context) (out []LUNInfo, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/luns", nil, &out)
	return out, err
}

// LUN describes one LUN.
func (c *Client) LUN(ctx context.Context, name string) (out LUNInfo, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/luns/"+url.PathEscape(name), nil, &out)
	return out, err
}

// CreateLUN adds an empty LUN.
func (c *Client) CreateLUN(ctx context.Context, req CreateLUNRequest) (out LUNInfo, err error) {
	_, err = c.do(ctx, http.MethodPost, "/v1/luns", req, &out)
	return out, err
}

// DeleteLUN deletes a LUN. It is refused (ErrLUNInUse) when the LUN has
// snapshots, clones or NBD clients, or is a set's snapshot, unless force.
func (c *Client) DeleteLUN(ctx context.Context, name string, force bool) (out DeleteResult, err error) {
	path := "/v1/luns/" + url.PathEscape(name)
	if force {
		path += "?force=true"
	}
	_, err = c.do(ctx, http.MethodDelete, path, nil, &out)
	return out, err
}

// Faults returns a LUN's fault rules.
func (c *Client) Faults(ctx context.Context, name string) (out FaultList, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/luns/"+url.PathEscape(name)+"/faults", nil, &out)
	return out, err
}

// AddFault adds a fault rule to a LUN.
func (c *Client) AddFault(ctx context.Context, name string, r FaultRule) (out FaultList, err error) {
	_, err = c.do(ctx, http.MethodPost, "/v1/luns/"+url.PathEscape(name)+"/faults", r, &out)
	return out, err
}

// ClearFaults removes a LUN's fault rules.
func (c *Client) ClearFaults(ctx context.Context, name string) (out FaultList, err error) {
	_, err = c.do(ctx, http.MethodDelete, "/v1/luns/"+url.PathEscape(name)+"/faults", nil, &out)
	return out, err
}

// Sets lists the snapshot sets.
func (c *Client) Sets(ctx context.Context) (out []SetSummary, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/sets", nil, &out)
	return out, err
}

// Set reports one snapshot set.
func (c *Client) Set(ctx context.Context, id vss.ID) (out *SetReport, err error) {
	_, err = c.do(ctx, http.MethodGet, idPath("/v1/sets/", id, ""), nil, &out)
	return out, err
}

// CreateSet runs one complete backup in the daemon. When the set fails
// after it started, the error is an *APIError whose Set is its report.
func (c *Client) CreateSet(ctx context.Context, req CreateSetRequest) (out *SetReport, err error) {
	_, err = c.do(ctx, http.MethodPost, "/v1/sets", req, &out)
	return out, err
}

// DeleteSet deletes every snapshot of a set.
func (c *Client) DeleteSet(ctx context.Context, id vss.ID) (out DeleteResult, err error) {
	_, err = c.do(ctx, http.MethodDelete, idPath("/v1/sets/", id, ""), nil, &out)
	return out, err
}

// BreakSet breaks a set: its snapshot LUNs become ordinary LUNs.
func (c *Client) BreakSet(ctx context.Context, id vss.ID, req BreakRequest) (out BreakResult, err error) {
	_, err = c.do(ctx, http.MethodPost, idPath("/v1/sets/", id, "/break"), req, &out)
	return out, err
}

// Snapshots lists the snapshots.
func (c *Client) Snapshots(ctx context.Context) (out []SnapshotInfo, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/snapshots", nil, &out)
	return out, err
}

// Snapshot describes one snapshot.
func (c *Client) Snapshot(ctx context.Context, id vss.ID) (out SnapshotInfo, err error) {
	_, err = c.do(ctx, http.MethodGet, idPath("/v1/snapshots/", id, ""), nil, &out)
	return out, err
}

// Diff returns where snapshot id differs from snapshot against, or from
// its volume's LUNs now when against is nil.
func (c *Client) Diff(ctx context.Context, id vss.ID, against *vss.ID) (out *SnapshotDiff, err error) {
	q := ""
	if against != nil {
		q = "?against=" + url.QueryEscape(against.String())
	}
	_, err = c.do(ctx, http.MethodGet, idPath("/v1/snapshots/", id, "/diff"+q), nil, &out)
	return out, err
}

// DeleteSnapshot deletes one snapshot.
func (c *Client) DeleteSnapshot(ctx context.Context, id vss.ID) (out DeleteResult, err error) {
	_, err = c.do(ctx, http.MethodDelete, idPath("/v1/snapshots/", id, ""), nil, &out)
	return out, err
}

// ExposeSnapshot exports a snapshot's LUN over NBD.
func (c *Client) ExposeSnapshot(ctx context.Context, id vss.ID) (out ExposeResult, err error) {
	_, err = c.do(ctx, http.MethodPost, idPath("/v1/snapshots/", id, "/expose"), nil, &out)
	return out, err
}

// RevertSnapshot copies a snapshot back onto its volume.
// It is refused (HTTP 409) while NBD clients have a source LUN open,
// unless force, which disconnects them first.
func (c *Client) RevertSnapshot(ctx context.Context, id vss.ID, force bool) (out RevertResult, err error) {
	path := idPath("/v1/snapshots/", id, "/revert")
	if force {
		path += "?force=true"
	}
	_, err = c.do(ctx, http.MethodPost, path, nil, &out)
	return out, err
}

// Writers lists the writers the daemon knows.
func (c *Client) Writers(ctx context.Context) (out []WriterInfo, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/writers", nil, &out)
	return out, err
}

// RegisterWriter registers a remote writer. Attach is the usual way.
func (c *Client) RegisterWriter(ctx context.Context, reg WriterRegistration) (out WriterInfo, err error) {
	_, err = c.do(ctx, http.MethodPost, "/v1/writers", reg, &out)
	return out, err
}

// UnregisterWriter detaches a remote writer.
func (c *Client) UnregisterWriter(ctx context.Context, id vss.ID) (out WriterInfo, err error) {
	_, err = c.do(ctx, http.MethodDelete, idPath("/v1/writers/", id, ""), nil, &out)
	return out, err
}

// NextEvent waits up to wait for a remote writer's next event; nil when
// none came.
func (c *Client) NextEvent(ctx context.Context, id vss.ID, wait time.Duration) (*WireEvent, error) {
	var ev WireEvent
	status, err := c.do(ctx, http.MethodGet, idPath("/v1/writers/", id, "/events?wait="+wait.String()), nil, &ev)
	if err != nil || status == http.StatusNoContent {
		return nil, err
	}
	return &ev, nil
}

// CrashPoints lists a LUN's crash points.
func (c *Client) CrashPoints(ctx context.Context, name string) (out []CrashPointInfo, err error) {
	_, err = c.do(ctx, http.MethodGet, "/v1/luns/"+url.PathEscape(name)+"/crashpoints", nil, &out)
	return out, err
}

// Mark adds a mark to a LUN's crash points.
func (c *Client) Mark(ctx context.Context, name, label string) (out CrashPointInfo, err error) {
	_, err = c.do(ctx, http.MethodPost, "/v1/luns/"+url.PathEscape(name)+"/marks", MarkRequest{Label: label}, &out)
	return out, err
}

// ExposeCrashPoint makes a LUN of what name would hold after a power cut
// at crash point id.
func (c *Client) ExposeCrashPoint(ctx context.Context, name string, id int, req ExposePointRequest) (out LUNInfo, err error) {
	_, err = c.do(ctx, http.MethodPost, fmt.Sprintf("/v1/luns/%s/crashpoints/%d/expose", url.PathEscape(name), id), req, &out)
	return out, err
}

// PowerCut cuts a LUN's power (see PowerCutRequest).
func (c *Client) PowerCut(ctx context.Context, name string, req PowerCutRequest) (out PowerCutResult, err error) {
	_, err = c.do(ctx, http.MethodPost, "/v1/luns/"+url.PathEscape(name)+"/powercut", req, &out)
	return out, err
}

// Progress returns the snapshot set being created and what it waits on,
// or an *APIError of status 404 when no set is being created.
func (c *Client) Progress(ctx context.Context) (*SetProgress, error) {
	var p SetProgress
	if _, err := c.do(ctx, http.MethodGet, "/v1/sets/current", nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Link holds a remote writer's link open until ctx ends or the daemon
// closes it: while one is open, the daemon knows the client lives, and
// when its connection closes (the client died) the writer is dropped
// within a second.
func (c *Client) Link(ctx context.Context, id vss.ID) error {
	_, err := c.do(ctx, http.MethodGet, idPath("/v1/writers/", id, "/link"), nil, nil)
	return err
}

// AnswerEvent answers a remote writer's event.
func (c *Client) AnswerEvent(ctx context.Context, id vss.ID, event string, a EventAnswer) error {
	_, err := c.do(ctx, http.MethodPost, idPath("/v1/writers/", id, "/events/"+url.PathEscape(event)), a, nil)
	return err
}

// Metrics returns the Prometheus exposition text of /metrics.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrUnreachable, c.addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	return string(b), err
}

// isGone reports whether err says the daemon no longer knows a writer.
func isGone(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusGone)
}

// Describe returns a snapshot, or, when id names none, a snapshot set.
func (c *Client) Describe(ctx context.Context, id vss.ID) (Texter, error) {
	s, err := c.Snapshot(ctx, id)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, vss.VSS_E_OBJECT_NOT_FOUND) {
		return nil, err
	}
	rep, err := c.Set(ctx, id)
	if errors.Is(err, vss.VSS_E_OBJECT_NOT_FOUND) {
		return nil, &APIError{Status: http.StatusNotFound, HRESULT: vss.VSS_E_OBJECT_NOT_FOUND,
			Message: fmt.Sprintf("no snapshot or snapshot set %v", id)}
	}
	return rep, err
}
