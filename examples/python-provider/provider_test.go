// Package pythonprovider_test drives the Python sample provider through full
// backups, so the provider protocol is proven outside Go.
package pythonprovider_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/shadowbench/shadowbench/coordinator"
	"github.com/shadowbench/shadowbench/lun"
	"github.com/shadowbench/shadowbench/provider/wire"
	"github.com/shadowbench/shadowbench/scenarios"
	"github.com/shadowbench/shadowbench/vss"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// python returns a python3 that imports grpc and protobuf (Debian's, which
// may not be the first python3 on PATH), or skips the test; under CI=true
// a missing one fails it.
func python(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("the Python provider is not started in -short mode")
	}
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import grpc, google.protobuf").Run() == nil {
			return py
		}
	}
	msg := "no python3 with grpc and protobuf (Debian packages python3-grpcio python3-protobuf; make deps installs them)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// start runs provider.py on a free loopback port until the end of the test
// and returns its address.
func start(t *testing.T, args ...string) string {
	t.Helper()
	py := python(t)
	cmd := exec.Command(py, append([]string{"provider.py", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
	}()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(l, "listening on ")
		require.True(t, ok, "provider.py said %q", l)
		return addr
	case <-time.After(20 * time.Second):
		t.Fatal("provider.py did not start")
	}
	return ""
}

// backup runs a full backup (A.1-A.10) of data (lun0+lun1) and logs (lun2)
// through the provider at addr, and returns the set's result and provider
// calls.
func backup(t *testing.T, addr string) (error, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := lun.NewArray(lun.Config{})
	require.NoError(t, err)
	for i := range 3 {
		_, err := a.Create(fmt.Sprintf("lun%d", i), lun.Options{Size: 1 << 20})
		require.NoError(t, err)
	}
	c, err := wire.Dial(addr)
	require.NoError(t, err)
	defer c.Close()
	s := coordinator.New(a, coordinator.Config{ProviderTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	defer func() { require.NoError(t, s.Close(context.Background())) }()
	require.NoError(t, s.RegisterProvider(ctx, coordinator.Registration{Name: "python", Provider: c}))
	require.NoError(t, s.AddVolume("data", "lun0", "lun1"))
	require.NoError(t, s.AddVolume("logs", "lun2"))

	bc := s.NewBackupComponents()
	defer bc.Close(ctx)
	require.NoError(t, bc.InitializeForBackup(nil))
	require.NoError(t, bc.SetBackupState(true, false, vss.VSS_BT_FULL, false))
	require.NoError(t, bc.GatherWriterMetadata(ctx))
	set, err := bc.StartSnapshotSet()
	require.NoError(t, err)
	var snaps []vss.ID
	for _, v := range []string{"data", "logs"} {
		id, err := bc.AddToSnapshotSet(ctx, v, vss.GUID_NULL)
		require.NoError(t, err)
		snaps = append(snaps, id)
	}
	require.NoError(t, bc.PrepareForBackup(ctx))
	async, err := bc.DoSnapshotSet(ctx)
	require.NoError(t, err)
	setErr := async.Wait(ctx)
	if setErr == nil {
		for _, id := range snaps {
			p, err := bc.GetSnapshotProperties(id)
			require.NoError(t, err)
			require.Equal(t, vss.VSS_SS_CREATED, p.State)
		}
		require.NoError(t, bc.BackupComplete(ctx))
	} else {
		require.NoError(t, bc.AbortBackup(ctx))
	}
	info, ok := s.Set(set)
	require.True(t, ok)
	var calls []string
	for _, sp := range info.Timeline.Spans() {
		if sp.Kind == coordinator.KindProvider {
			calls = append(calls, sp.Name+"="+sp.Result)
		}
	}
	return setErr, calls
}

// The Python provider passes a full backup: every call of A.7 in order,
// each S_OK, and the set is created.
func TestPythonProviderFullBackup(t *testing.T) {
	err, calls := backup(t, start(t))
	require.NoError(t, err)
	require.Equal(t, []string{
		"AreLunsSupported=S_OK", "BeginPrepareSnapshot=S_OK", "AreLunsSupported=S_OK", "BeginPrepareSnapshot=S_OK",
		"EndPrepareSnapshots=S_OK", "PreCommitSnapshots=S_OK", "CommitSnapshots=S_OK", "PostCommitSnapshots=S_OK",
		"GetTargetLuns=S_OK", "LocateLuns=S_OK", "PreFinalCommitSnapshots=S_OK", "PostFinalCommitSnapshots=S_OK",
	}, calls)
}

// Its failures reach the requester as VSS would hand them on: a veto in
// CommitSnapshots fails the set with VSS_E_PROVIDER_VETO and the set is
// aborted (B.7, B.9); E_FAIL becomes VSS_E_UNEXPECTED_PROVIDER_ERROR (C).
func TestPythonProviderFailures(t *testing.T) {
	err, calls := backup(t, start(t, "--fail", "CommitSnapshots=VSS_E_PROVIDER_VETO"))
	require.ErrorIs(t, err, vss.VSS_E_PROVIDER_VETO)
	require.Contains(t, calls, "CommitSnapshots=VSS_E_PROVIDER_VETO")
	require.Equal(t, "AbortSnapshots=S_OK", calls[len(calls)-1])

	err, calls = backup(t, start(t, "--fail", "PreCommitSnapshots=E_FAIL"))
	require.ErrorIs(t, err, vss.VSS_E_UNEXPECTED_PROVIDER_ERROR)
	require.Contains(t, calls, "PreCommitSnapshots=VSS_E_UNEXPECTED_PROVIDER_ERROR")
}

// TestPythonProviderScenarios: scenario run --provider ADDR against the
// Python provider runs the library's provider-facing files, and every one
// passes; a-call-order is a full backup whose every call is checked in
// A.7's order.
func TestPythonProviderScenarios(t *testing.T) {
	addr := start(t)
	scs, err := scenarios.LoadDir("../../scenarios/library")
	require.NoError(t, err)
	ran := 0
	for _, sc := range scs {
		var out strings.Builder
		res := scenarios.Run(context.Background(), sc, scenarios.Options{TimeScale: 0.01, Provider: addr, Out: &out})
		switch res.Status {
		case scenarios.StatusSkipped:
			continue
		case scenarios.StatusPass:
			ran++
		default:
			t.Errorf("%s\n%s", res.Verdict(), out.String())
		}
	}
	require.GreaterOrEqual(t, ran, 5, "the provider-facing files ran")
	t.Logf("%d provider-facing scenarios passed against the Python provider", ran)
}
