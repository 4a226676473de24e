package wire_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shadowbench/shadowbench/nbd/nbdtest"
)

// protocVersion matches the lines that name the generator's versions, which
// differ between machines without changing the code.
var protocVersion = regexp.MustCompile(`(?m)^//.*protoc(-gen-go(-grpc)?)?\s+v?[0-9.]+\s*$`)

// The committed generated code is what provider.proto declares: make proto
// was run after the last change to it (Go, and the Python sample's module).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	nbdtest.NeedTool(t, "protoc", "protobuf-compiler")
	bin, out := t.TempDir(), t.TempDir()
	for _, pkg := range []string{"google.golang.org/protobuf/cmd/protoc-gen-go", "google.golang.org/grpc/cmd/protoc-gen-go-grpc"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", b)
	}
	cmd := exec.Command("protoc",
		"--plugin=protoc-gen-go="+filepath.Join(bin, "protoc-gen-go"),
		"--plugin=protoc-gen-go-grpc="+filepath.Join(bin, "protoc-gen-go-grpc"),
		"--go_out="+out, "--go_opt=paths=source_relative",
		"--go-grpc_out="+out, "--go-grpc_opt=paths=source_relative",
		"--python_out="+out, "provider.proto")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	for gen, committed := range map[string]string{
		"provider.pb.go":      "wirepb/provider.pb.go",
		"provider_grpc.pb.go": "wirepb/provider_grpc.pb.go",
		"provider_pb2.py":     "../../examples/python-provider/provider_pb2.py",
	} {
		want, err := os.ReadFile(filepath.Join(out, gen))
		require.NoError(t, err)
		got, err := os.ReadFile(committed)
		require.NoError(t, err)
		want, got = protocVersion.ReplaceAll(want, nil), protocVersion.ReplaceAll(got, nil)
		require.True(t, bytes.Equal(want, got), "%s is stale: run make proto", committed)
	}
}
