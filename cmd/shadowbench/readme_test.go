package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/nbd/nbdtest"
)

// TestREADMETour runs the README's tour as a user pastes it, block after
// block, against a daemon of its own: the file system on a LUN, a named
// snapshot mounted read-only, a diff, a revert, the teardown. Paths and
// ports are the test's own; the lines that need a second terminal or a
// hook of the user's are left out. It needs root and the real clients.
func TestREADMETour(t *testing.T) {
	nbdtest.NeedMounts(t)
	for tool, pkg := range map[string]string{"jq": "jq", "nbdinfo": "libnbd-bin", "qemu-io": "qemu-utils"} {
		nbdtest.NeedTool(t, tool, pkg)
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	s := string(readme)
	start, end := strings.Index(s, "## A tour"), strings.Index(s, "### serve as nbdkit")
	require.True(t, start >= 0 && end > start, "the README has its tour")
	dir := t.TempDir()
	nbdPort, apiPort := freePort(t), freePort(t)

	// bin/shadowbench, in the tour's directory, is this test binary run as
	// the command.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", "shadowbench"), []byte("#!/bin/sh\nexec env "+envRunMain+"=1 "+os.Args[0]+" \"$@\"\n"), 0o755))
	script := []string{"set -ex", "cd " + dir, "trap 'rc=$?; set +e; umount " + dir + "/mnt/* 2>/dev/null; kill $(jobs -p) 2>/dev/null; exit $rc' EXIT",
		"export XDG_RUNTIME_DIR=" + dir, "export SHADOWBENCH_API=127.0.0.1:" + apiPort,
		"bin/shadowbench serve --listen 127.0.0.1:" + nbdPort + " --api 127.0.0.1:" + apiPort + " 2>serve.log &",
		"for i in $(seq 100); do bin/shadowbench status >/dev/null 2>&1 && break; sleep 0.1; done; bin/shadowbench status"}
	local := strings.NewReplacer("127.0.0.1:10809", "127.0.0.1:"+nbdPort, "/tmp/", dir+"/tmp/", "/mnt/", dir+"/mnt/")
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(s[start:end], -1) {
		for _, line := range strings.Split(block[1], "\n") {
			switch {
			case strings.HasPrefix(line, "make build"), strings.HasPrefix(line, "bin/shadowbench serve"),
				strings.Contains(line, "writer attach"), strings.HasPrefix(line, "bin/shadowbench snapshot create lun1"),
				strings.HasPrefix(line, "curl "), strings.HasPrefix(line, "source "):
				continue
			}
			script = append(script, local.Replace(line))
		}
	}
	script = append(script, "wait %1", "echo TOUR DONE")
	path := filepath.Join(dir, "tour.sh")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(script, "\n")+"\n"), 0o755))
	cmd := exec.Command("/bin/bash", path)
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		log, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
		t.Logf("serve.log:\n%s", log)
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the tour did not finish in 2 minutes:\n%s", out)
	}
	require.NoError(t, err, "%s", out)
	o := string(out)
	require.Contains(t, o, "TOUR DONE")
	require.Equal(t, 2, strings.Count(o, "\nbefore the snapshot\n"), "the snapshot, then the reverted LUN, hold the old file:\n%s", o)
}
