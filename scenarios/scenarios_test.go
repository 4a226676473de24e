package scenarios

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDev(t *testing.T) {
	files, _ := filepath.Glob("library/" + os.Getenv("SC") + "*.yaml")
	for _, f := range files {
		sc, err := Load(f)
		require.NoError(t, err)
		res := Run(context.Background(), sc, Options{TimeScale: 0.01, Out: os.Stdout})
		_ = res
	}
}
