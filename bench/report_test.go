package bench

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// sampleResults are a sequence and an io-impact run, tiny: between them
// every kind of chart.
func sampleResults(t *testing.T) []*Result {
	t.Helper()
	ctx := context.Background()
	seq, err := RunSequence(ctx, tinySequence(), nil)
	require.NoError(t, err)
	io, err := RunIOImpact(ctx, tinyIOImpact(), nil)
	require.NoError(t, err)
	return []*Result{seq, io}
}

// wantIDs are the chart ids a report of sampleResults must have.
var wantIDs = []string{"gantt-0", "hold-0", "percentiles-0-phase", "histogram-0-phase", "percentiles-0-window",
	"gantt-1", "hold-1", "series-1", "percentiles-1-write", "histogram-1-write"}

func TestReportHTML(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, WriteHTML(&buf, sampleResults(t)...))
	html := buf.String()
	for _, id := range wantIDs {
		require.Contains(t, html, `<svg id="`+id+`"`, id)
	}
	// Self-contained: nothing is fetched.
	for _, bad := range []string{"<script", "<link", "@import", "src=", "url("} {
		require.NotContains(t, html, bad)
	}
	require.NotContains(t, strings.ReplaceAll(html, `xmlns="http://www.w3.org/2000/svg"`, ""), "http")
	for _, want := range []string{"Machine", "CPU", "go1.", "DoSnapshotSet", "freeze window: writer0", "hold window"} {
		require.Contains(t, html, want)
	}
}

// TestReportRendersInChromium renders a report in headless Chromium and
// checks that the screenshot is not blank and that the browser's DOM has
// the charts.
func TestReportRendersInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (Debian package chromium); CI needs it")
		}
		t.Skip("chromium is not installed (Debian package chromium)")
	}
	if testing.Short() {
		t.Skip("starts a browser")
	}
	dir := t.TempDir()
	report := filepath.Join(dir, "report.html")
	f, err := os.Create(report)
	require.NoError(t, err)
	require.NoError(t, WriteHTML(f, sampleResults(t)...))
	require.NoError(t, f.Close())

	// The profile directory is not t.TempDir's: a browser may still be
	// writing into it when the test ends.
	profile, err := os.MkdirTemp("", "shadowbench-chromium-")
	require.NoError(t, err)
	defer os.RemoveAll(profile)
	run := func(extra ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + profile, "--window-size=1280,2000"}, extra...)
		cmd := exec.CommandContext(ctx, bin, append(args, "file://"+report)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "chromium: %s", stderr.String())
		return stdout.Bytes()
	}

	shot := filepath.Join(dir, "shot.png")
	run("--screenshot=" + shot)
	pf, err := os.Open(shot)
	require.NoError(t, err)
	defer pf.Close()
	img, err := png.Decode(pf)
	require.NoError(t, err)
	colours, nonWhite, total := pixelStats(img)
	require.Greater(t, colours, 16, "a blank or nearly blank page")
	require.Greater(t, float64(nonWhite)/float64(total), 0.02, "too few non-white pixels")

	dom := string(run("--dump-dom"))
	for _, id := range wantIDs {
		require.Contains(t, dom, `id="`+id+`"`, id)
	}
	require.Contains(t, dom, "<rect")
	require.Contains(t, dom, "<polyline")
}

// pixelStats counts the distinct colours and the pixels that are not white.
func pixelStats(img image.Image) (colours, nonWhite, total int) {
	seen := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if r>>8 < 250 || g>>8 < 250 || bl>>8 < 250 {
				nonWhite++
			}
			total++
		}
	}
	return len(seen), nonWhite, total
}
