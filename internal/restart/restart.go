// Package restart is what every target that supervises kiln's processes
// agrees on: which exit status means "do not start me again", and how long
// to wait before starting again a process that exited.
package restart

import "time"

// ExitUsage is the status with which a kiln program refuses its
// configuration (a role variable it cannot use, a Dial of a service its
// app lacks). Restarting it cannot help, so supervisors do not.
const ExitUsage = 2

// The backoff: doubling from Min to Max, back to Min once a process has
// stayed up for Stable.
const (
	Min    = 100 * time.Millisecond
	Max    = 5 * time.Second
	Stable = 10 * time.Second
)

// Backoff is one process's restart delay. The zero value is ready.
type Backoff struct{ next time.Duration }

// Next is how long to wait before starting again a process that ran for
// up before it exited.
func (b *Backoff) Next(up time.Duration) time.Duration {
	if b.next == 0 || up > Stable {
		b.next = Min
	}
	d := b.next
	b.next = min(b.next*2, Max)
	return d
}
