// Package daemontest helps the tests that run the real shadowbench binary
// (daemon/crashtest, daemon/soaktest): it builds it once per test binary.
package daemontest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Main builds the shadowbench binary into a temporary directory, sets
// *bin to its path, runs the tests and exits with their code, removing the
// directory. A build that fails ends the run with its output.
func Main(m *testing.M, name string, bin *string) {
	dir, err := os.MkdirTemp("", name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = filepath.Join(dir, "shadowbench")
	out, err := exec.Command("go", "build", "-o", *bin, "github.com/shadowbench/shadowbench/cmd/shadowbench").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building shadowbench: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
