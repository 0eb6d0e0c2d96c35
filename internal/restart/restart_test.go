package restart

import (
	"testing"
	"time"
)

func TestBackoffDoublesToMaxAndResetsAfterAStableRun(t *testing.T) {
	var b Backoff
	ms := time.Millisecond
	for i, tc := range []struct {
		up, want time.Duration
	}{
		{0, 100 * ms}, {ms, 200 * ms}, {ms, 400 * ms}, {ms, 800 * ms}, {ms, 1600 * ms},
		{ms, 3200 * ms}, {ms, 5 * time.Second}, {ms, 5 * time.Second},
		{11 * time.Second, 100 * ms}, {ms, 200 * ms},
	} {
		if got := b.Next(tc.up); got != tc.want {
			t.Fatalf("exit %d: Next(%s) = %s, want %s", i, tc.up, got, tc.want)
		}
	}
}
