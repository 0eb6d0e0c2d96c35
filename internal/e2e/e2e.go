// Package e2e lets tests that need a real part (a Docker engine, a cluster,
// QEMU) skip on a developer's machine that lacks it, and fail under CI,
// where KILN_E2E=require.
package e2e

import (
	"os"
	"testing"
)

// EnvRequire set to "require" turns a missing part into a test failure.
const EnvRequire = "KILN_E2E"

// Required reports whether missing parts must fail tests.
func Required() bool { return os.Getenv(EnvRequire) == "require" }

// Require skips t when err says part is missing, or fails it when parts are
// required. fix tells a developer how to provide the part.
func Require(t testing.TB, part string, err error, fix string) {
	t.Helper()
	if err == nil {
		return
	}
	if Required() {
		t.Fatalf("%s is required (%s=require) but unavailable: %v\nfix: %s", part, EnvRequire, err, fix)
	}
	t.Skipf("%s unavailable: %v (%s)", part, err, fix)
}
