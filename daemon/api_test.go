package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/vss"
)

// rawCall sends a request with a raw body and decodes the JSON answer.
func rawCall(t *testing.T, d *Daemon, method, path, body string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, d.APIURLs()[0]+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s %s answers JSON", method, path)
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out), "%s %s", method, path)
	return resp.StatusCode, resp.Header, out
}

// TestAPIErrors checks D6: every failure is JSON with a clear message, the
// HRESULT's name and value where there is one, a sensible status, and
// changes nothing.
func TestAPIErrors(t *testing.T) {
	d, _ := start(t, testConfig())
	const nullID = "00000000-0000-0000-0000-000000000001"
	for _, tc := range []struct {
		method, path, body string
		status             int
		err, hresult, code string
	}{
		{"GET", "/v1/luns/nope", "", 404, `no such LUN: nope`, "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"DELETE", "/v1/luns/nope", "", 404, "no such LUN", "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"POST", "/v1/luns/nope/faults", `{"error":"EIO"}`, 404, "no such LUN", "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"GET", "/v1/snapshots/" + nullID, "", 404, "no such snapshot or snapshot set: snapshot {", "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"GET", "/v1/sets/" + nullID, "", 404, "no such snapshot or snapshot set", "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"DELETE", "/v1/writers/" + nullID, "", 404, "no such writer", "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"GET", "/v1/snapshots/not-a-guid", "", 400, `bad request: ID "not-a-guid": want a GUID`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns", `{"name":"x","size":"1GiB"`, 400, "bad request: JSON body: unexpected EOF", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns", `{"name":"x","size":"1GiB","colour":"red"}`, 400, `unknown field "colour"`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns", `{"name":"x","size":"1GiB"} {}`, 400, "data after the object", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns", ``, 400, "the request needs a JSON body", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns", `{"name":"x","size":"lots"}`, 400, `size "lots"`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns", `{"name":"x","size":1000}`, 400, "size 1000 is not a multiple of the block size 512", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns", `{"name":"bad/name","size":4096}`, 400, "LUN names are 1-255 characters", "", ""},
		{"POST", "/v1/luns", `{"name":".","size":4096}`, 400, "LUN names are 1-255 characters of [A-Za-z0-9._:-], other than . and ..", "", ""},
		{"POST", "/v1/luns", `{"name":"..","size":4096}`, 400, "other than . and ..", "", ""},
		{"POST", "/v1/luns", `{"name":"` + strings.Repeat("n", 256) + `","size":4096}`, 400, "LUN names are 1-255", "", ""},
		{"POST", "/v1/luns", `{"name":"lun0","size":4096}`, 409, "LUN lun0 exists already", "", ""},
		{"POST", "/v1/luns/lun0/faults", `{"ops":["write"]}`, 400, "a fault needs a latency, an error or both", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns/lun0/faults", `{"error":"EBADF"}`, 400, `error "EBADF": want EIO`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns/lun0/faults", `{"error":"EIO","probability":2}`, 400, "probability 2", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns/lun0/faults", `{"error":"EIO","ops":["rename"]}`, 400, `op "rename"`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/luns/lun0/faults", `{"latency":"soon"}`, 400, `latency "soon"`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/sets", `{}`, 400, "name at least one LUN or volume", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/sets", `{"targets":["lun0"],"context":"sometimes"}`, 400, `context "sometimes"`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/sets", `{"targets":["lun0"],"backup_type":"partial"}`, 400, `backup type "partial"`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/sets", `{"targets":["lun0"],"provider":"emc"}`, 422, `provider "emc"`, "VSS_E_PROVIDER_NOT_REGISTERED", "0x80042304"},
		{"POST", "/v1/sets", `{"targets":["nope"]}`, 404, "AddToSnapshotSet(nope)", "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"POST", "/v1/sets", `{"targets":["lun0"],"writers":["` + nullID + `"]}`, 404, "no such writer", "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"POST", "/v1/writers", `{"level":"back-end"}`, 400, "a writer needs a name", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/writers", `{"name":"a writer"}`, 400, `writer names are 1-255 characters of [A-Za-z0-9._:-], other than . and ..: "a writer"`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/writers", `{"name":".."}`, 400, "writer names are 1-255", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/writers", `{"name":"w\n"}`, 400, "writer names are 1-255", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/writers", `{"name":"` + strings.Repeat("w", 256) + `"}`, 400, "writer names are 1-255", "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/writers", `{"name":"w","level":"middle"}`, 400, `level "middle"`, "E_INVALIDARG", "0x80070057"},
		{"GET", "/v1/writers/" + nullID + "/events?wait=soon", "", 400, `wait "soon"`, "E_INVALIDARG", "0x80070057"},
		{"POST", "/v1/sets/" + nullID + "/break", `{"revert_identity":"some"}`, 400, `revert_identity "some"`, "E_INVALIDARG", "0x80070057"},
		{"DELETE", "/v1/sets/" + nullID, "", 404, "no such snapshot or snapshot set", "VSS_E_OBJECT_NOT_FOUND", "0x80042308"},
		{"GET", "/v1/nothing", "", 404, "GET /v1/nothing: no such route", "", ""},
		{"PUT", "/v1/luns", "", 405, "PUT /v1/luns: method not allowed (allowed: GET, POST)", "", ""},
	} {
		status, hdr, body := rawCall(t, d, tc.method, tc.path, tc.body)
		what := tc.method + " " + tc.path + " " + tc.body
		require.Equal(t, tc.status, status, what)
		require.Contains(t, body["error"], tc.err, what)
		if tc.hresult == "" {
			require.NotContains(t, body, "hresult", what)
		} else {
			require.Equal(t, tc.hresult, body["hresult"], what)
			require.Equal(t, tc.code, body["code"], what)
		}
		if status == 405 {
			require.Equal(t, "GET, POST", hdr.Get("Allow"))
		}
	}
	// Nothing changed: the two LUNs, no fault, no set, no writer.
	_, c := d, mustClient(t, d)
	luns, err := c.LUNs(context.Background())
	require.NoError(t, err)
	require.Len(t, luns, 2)
	require.Empty(t, luns[0].Faults)
	sets, err := c.Sets(context.Background())
	require.NoError(t, err)
	require.Len(t, sets, 1, "only the set that failed at AddToSnapshotSet")
	require.Equal(t, "abandoned", sets[0].State)
	ws, err := c.Writers(context.Background())
	require.NoError(t, err)
	require.Empty(t, ws)
}

func mustClient(t *testing.T, d *Daemon) *Client {
	c, err := NewClient(d.APIURLs()[0], WithToken(d.token))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// TestClientErrors checks that the client hands the HRESULT on, so
// errors.Is works across the API.
func TestClientErrors(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := context.Background()
	_, err := c.LUN(ctx, "nope")
	require.ErrorIs(t, err, vss.VSS_E_OBJECT_NOT_FOUND)
	require.EqualError(t, err, "no such LUN: nope [VSS_E_OBJECT_NOT_FOUND 0x80042308]")
	var ae *APIError
	require.True(t, errors.As(err, &ae))
	require.Equal(t, http.StatusNotFound, ae.Status)

	for _, addr := range []string{"ftp://x", "unix:", "http://h:1/path"} {
		_, err := NewClient(addr)
		require.ErrorIs(t, err, ErrBadAPIAddress, addr)
	}
	dead, err := NewClient("127.0.0.1:1")
	require.NoError(t, err)
	_, err = dead.Status(ctx)
	require.ErrorIs(t, err, ErrUnreachable)
	require.ErrorContains(t, err, "is `shadowbench serve` running?")
	t.Setenv(EnvAPI, "unix:/run/x.sock")
	require.Equal(t, "unix:/run/x.sock", ResolveAPI(""))
	require.Equal(t, "h:1", ResolveAPI("h:1"))
}

func TestLUNsAndFaults(t *testing.T) {
	_, c := start(t, testConfig())
	ctx := context.Background()
	l, err := c.CreateLUN(ctx, CreateLUNRequest{Name: "scratch", Size: 1 << 20, BlockSize: 4096, ReadOnly: true})
	require.NoError(t, err)
	require.Equal(t, "original", l.Kind)
	require.True(t, l.ReadOnly)
	require.Len(t, l.Exports, 1)
	require.Regexp(t, `^nbd://127\.0\.0\.1:\d+/scratch$`, l.Exports[0])

	fl, err := c.AddFault(ctx, "lun0", FaultRule{Ops: []string{"write"}, Latency: "1ms", Error: "EIO", Probability: 0.5})
	require.NoError(t, err)
	require.Len(t, fl.Rules, 1)
	require.NotZero(t, fl.Rules[0].Seed, "a probability gets a seed, reported for replay")
	fl, err = c.AddFault(ctx, "lun0", FaultRule{Ops: []string{"read"}, Error: "ENOSPC", Nth: 2})
	require.NoError(t, err)
	require.Len(t, fl.Rules, 2)
	info, err := c.LUN(ctx, "lun0")
	require.NoError(t, err)
	require.Len(t, info.Faults, 2)

	fl, err = c.ClearFaults(ctx, "lun0")
	require.NoError(t, err)
	require.Empty(t, fl.Rules)
	res, err := c.DeleteLUN(ctx, "scratch", false)
	require.NoError(t, err)
	require.Equal(t, []string{"scratch"}, res.Deleted)
	ls, err := c.LUNs(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 2)
}
