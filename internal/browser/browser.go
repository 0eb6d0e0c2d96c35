// Package browser drives headless Chromium, from Debian's chromium
// package, for tests of pages kiln serves: it evaluates scripts in the
// page, waits for what they check, and saves screenshots that it checks
// are not blank.
package browser

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kiln-dev/kiln/internal/e2e"
)

// Start starts headless Chromium with a 1400×1000 window and returns the
// context of its tab; it stops with the test. Without Chromium the test
// skips, or fails under KILN_E2E=require.
func Start(t testing.TB) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	e2e.Require(t, "Chromium", err, "apt-get install -y chromium (hack/test does)")
	ctx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))...)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	return ctx
}

// Open loads url in the tab.
func Open(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
}

// Eval runs js in the page, awaiting a promise, and returns its value.
func Eval[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// WaitFor evaluates js until it is true, for up to within, and returns
// how long that took. On failure it shows what debug evaluates to.
func WaitFor(t testing.TB, ctx context.Context, within time.Duration, what, js, debug string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if Eval[bool](t, ctx, js) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s (%s); the page shows:\n%s", what, within, js, Eval[string](t, ctx, debug))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Screenshot saves the page as name in the test's artifact directory (go
// test -artifacts keeps it) and checks it is not blank: many colours, and
// much that is not the background.
func Screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	colours, inked, err := Ink(b)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	if colours < 50 || inked < 0.03 {
		t.Fatalf("Ink(%s) = %d colours, %.1f%% not background, want a drawn page (≥ 50, ≥ 3%%)", path, colours, inked*100)
	}
	t.Logf("screenshot %s: %d colours, %.1f%% not background", path, colours, inked*100)
}

// Ink counts a PNG's distinct colours and the share of its pixels that
// differ from its most common one, the background.
func Ink(b []byte) (colours int, inked float64, err error) {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return 0, 0, err
	}
	count := map[[4]uint32]int{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, ca := img.At(x, y).RGBA()
			count[[4]uint32{cr, cg, cb, ca}]++
		}
	}
	most := 0
	for _, n := range count {
		most = max(most, n)
	}
	total := r.Dx() * r.Dy()
	return len(count), float64(total-most) / float64(total), nil
}
