package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress receives a run's advance: the fraction done, in [0, 1], and a
// short status ("12 sets"). A run calls Update from one goroutine at a time,
// about ten times a second. A nil Progress is allowed everywhere.
type Progress interface {
	Update(frac float64, status string)
}

// IsTerminal reports whether f is a character device (a terminal), so that
// a progress bar is drawn only for a person watching and never into a pipe
// or a file.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ProgressBar is a one-line progress bar redrawn with a carriage return.
// It stays invisible for its first ShowAfter, so short runs print nothing.
// It is a few lines rather than a module: a bar needs no more.
type ProgressBar struct {
	// ShowAfter is how long the run goes before the bar appears; the
	// default (zero) is two seconds.
	ShowAfter time.Duration

	w     io.Writer
	label string
	start time.Time

	mu    sync.Mutex
	last  time.Time
	shown bool
}

// NewProgressBar returns a bar that draws on w, labelled with label.
func NewProgressBar(w io.Writer, label string) *ProgressBar {
	return &ProgressBar{w: w, label: label, start: time.Now()}
}

const barWidth = 30

// Update implements Progress.
func (b *ProgressBar) Update(frac float64, status string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	after := b.ShowAfter
	if after == 0 {
		after = 2 * time.Second
	}
	if now.Sub(b.start) < after || now.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last, b.shown = now, true
	frac = min(max(frac, 0), 1)
	n := int(frac * barWidth)
	fmt.Fprintf(b.w, "\r%s [%s%s] %3.0f%% %s %s\x1b[K", b.label,
		strings.Repeat("=", n), strings.Repeat(" ", barWidth-n), frac*100,
		FormatDuration(now.Sub(b.start).Truncate(100*time.Millisecond)), status)
}

// Finish erases the bar, if it was drawn.
func (b *ProgressBar) Finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shown {
		fmt.Fprint(b.w, "\r\x1b[K")
		b.shown = false
	}
}

// ticker calls p.Update every 100 ms with the fraction of total elapsed
// and status(), until the returned stop function is called.
func ticker(p Progress, total time.Duration, status func() string) (stop func()) {
	if p == nil {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				frac := 1.0
				if total > 0 {
					frac = float64(time.Since(start)) / float64(total)
				}
				p.Update(frac, status())
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
