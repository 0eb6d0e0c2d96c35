package main

import (
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/browser"
)

// TestDevDashboardShowsEachBuildAndTheLastCompileError runs kiln dev on a
// copy of examples/kv and watches its dashboard in headless Chromium
// through a good build, a syntax error and its fix.
func TestDevDashboardShowsEachBuildAndTheLastCompileError(t *testing.T) {
	ctx := browser.Start(t)
	dir := devModule(t)
	_, out, _ := startDev(t, dir)
	m := regexp.MustCompile(`(?m)^kiln: dashboard at (http://127\.0\.0\.1:\d+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("kiln dev printed no dashboard line:\n%s", out)
	}
	browser.Open(t, ctx, m[1])
	const builds = `[...document.querySelectorAll('#build-list li')].map(l => l.textContent).join('\n') + '\nerror: ' + document.querySelector('#compile-error').textContent`
	browser.WaitFor(t, ctx, 10*time.Second, "the first build", `!document.querySelector('#builds').hidden
		&& document.querySelectorAll('#build-list li').length === 1
		&& /first build.*build \d+\.\d\d s → swap \d+\.\d\d s.*serving/.test(document.querySelector('#build-list li').textContent)
		&& document.querySelector('#compile-error').hidden`, builds)

	edit(t, filepath.Join(dir, "store/kv.go"), "func New() http.Handler {", "func New() http.Handler {\n\tx :=")
	out.waitFor(t, `^kiln: change store/kv\.go → build failed`, 60*time.Second)
	browser.WaitFor(t, ctx, 5*time.Second, "the compile error", `document.querySelectorAll('#build-list li').length === 2
		&& /store\/kv\.go.*build \d+\.\d\d s\s*build failed/.test(document.querySelector('#build-list li').textContent)
		&& !document.querySelector('#compile-error').hidden
		&& /store\/kv\.go:\d+:\d+: syntax error/.test(document.querySelector('#compile-error-text').textContent)`, builds)
	browser.Screenshot(t, ctx, "dev-compile-error.png")

	edit(t, filepath.Join(dir, "store/kv.go"), "func New() http.Handler {\n\tx :=", "func New() http.Handler {")
	out.waitFor(t, `^kiln: change store/kv\.go → build .* → serving`, 60*time.Second)
	browser.WaitFor(t, ctx, 5*time.Second, "the fix", `document.querySelectorAll('#build-list li').length === 3
		&& /swap \d+\.\d\d s.*serving/.test(document.querySelector('#build-list li').textContent)
		&& document.querySelector('#compile-error h3').textContent.includes('fixed since')`, builds)
	browser.Screenshot(t, ctx, "dev-fixed.png")
}
