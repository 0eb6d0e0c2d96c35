package unikernel

import (
	"testing"
	"time"
)

// TestProbeResultFreshness: a KVM answer holds for the same QEMU, kernel,
// machine and host boot; a failed probe is tried again after a day.
func TestProbeResultFreshness(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	im := &Image{KernelRelease: "6.1.0-56-cloud-amd64"}
	key := probeKey("/usr/bin/qemu-system-x86_64", im, "microvm")
	for _, tc := range []struct {
		name string
		pr   probeResult
		want bool
	}{
		{"kvm, same key", probeResult{Key: key, Accel: AccelKVM, At: now.Add(-30 * 24 * time.Hour)}, true},
		{"tcg, an hour old", probeResult{Key: key, Accel: AccelTCG, At: now.Add(-time.Hour)}, true},
		{"tcg, two days old", probeResult{Key: key, Accel: AccelTCG, At: now.Add(-48 * time.Hour)}, false},
		{"another kernel", probeResult{Key: probeKey("/usr/bin/qemu-system-x86_64", &Image{KernelRelease: "6.12"}, "microvm"), Accel: AccelKVM, At: now}, false},
		{"another boot", probeResult{Key: "/usr/bin/qemu-system-x86_64 6.1.0-56-cloud-amd64 microvm boot 0000", Accel: AccelKVM, At: now}, false},
	} {
		if got := tc.pr.fresh(key, now); got != tc.want {
			t.Errorf("%s: fresh = %v, want %v", tc.name, got, tc.want)
		}
	}
}
