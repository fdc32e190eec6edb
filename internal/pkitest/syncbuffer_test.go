package pkitest

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

var _ io.Writer = (*SyncBuffer)(nil)

// TestSyncBufferConcurrent writes from many goroutines while reading; run
// with -race it fails if SyncBuffer is not safe for concurrent use, and it
// checks that no write is lost or torn.
func TestSyncBufferConcurrent(t *testing.T) {
	t.Parallel()
	var buf SyncBuffer
	if got := buf.String(); got != "" {
		t.Fatalf("zero SyncBuffer String() = %q, want empty", got)
	}
	log := slog.New(slog.NewTextHandler(&buf, nil))
	const writers, lines = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				log.Info("line", "writer", w, "i", i)
				_ = buf.String() // concurrent reader
			}
		})
	}
	wg.Wait()
	got := buf.String()
	if n := strings.Count(got, "\n"); n != writers*lines {
		t.Fatalf("got %d lines, want %d:\n%s", n, writers*lines, got)
	}
	for w := range writers {
		for i := range lines {
			want := fmt.Sprintf("msg=line writer=%d i=%d\n", w, i)
			if !strings.Contains(got, want) {
				t.Fatalf("output lacks %q", want)
			}
		}
	}
}
