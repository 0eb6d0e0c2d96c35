package local

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/kiln-dev/kiln/patterns"
)

// Swap says what an Update did, by process name ("kv/shard-1").
type Swap struct {
	Replaced []string // new process started, then the old one stopped
	Started  []string // instances the topology gained
	Stopped  []string // instances it lost
}

// Changed reports whether the update touched any process.
func (s Swap) Changed() bool {
	return len(s.Replaced)+len(s.Started)+len(s.Stopped) > 0
}

// Update rolls the deployment over to t, run by opts.Binary and
// opts.Binaries with opts.Env (nil keeps Start's); the rest of opts is what
// Start was given. Only the
// processes whose binary path or environment changes are touched: a new
// build must come at a new path. Service by service, in t's order, and
// within a service backends before the entry, each new process starts on
// the socket of the one it replaces, and once it says it serves the old
// one drains and stops, so that no connection is refused. Instances t no
// longer has stop once their service's entry has been replaced.
//
// If a new process exits or is not ready within ReadyTimeout, Update
// stops the new processes of that step, keeps the old ones serving, and
// returns the error; the services it had already swapped stay swapped.
func (d *Deployment) Update(ctx context.Context, t *patterns.Topology, opts Options) (Swap, error) {
	var sw Swap
	for i := range t.Workloads {
		if opts.binary(t.Workloads[i].Service) == "" {
			return sw, fmt.Errorf("local: no binary runs service %q: set Options.Binary or Options.Binaries", t.Workloads[i].Service)
		}
	}
	opts.Port = 0 // entry points keep their sockets
	if opts.Env == nil {
		opts.Env = d.opts.Env
	}
	old := map[string]*proc{}
	for _, p := range d.current() {
		old[p.name] = p
	}
	next, endpoints, opened, err := d.place(t, opts, old)
	if err != nil {
		return sw, err
	}
	// live is what runs now, by name; it becomes next as steps succeed.
	live := maps.Clone(old)
	defer func() {
		d.publish(next, live)
		// Sockets opened for instances that never came up.
		used := map[*os.File]bool{}
		for _, p := range live {
			used[p.socket] = true
		}
		for _, f := range opened {
			if !used[f] {
				f.Close()
			}
		}
	}()
	kept := map[string]bool{}
	for _, p := range next {
		kept[p.name] = true
	}
	for _, svc := range services(t) {
		for _, entry := range []bool{false, true} {
			var step []*proc
			for _, p := range next {
				if p.workload.Service == svc && p.workload.Entry == entry && live[p.name] != p {
					step = append(step, p)
				}
			}
			if len(step) == 0 {
				continue
			}
			if err := d.bringUp(ctx, step); err != nil {
				return sw, err
			}
			var replaced []*proc
			for _, p := range step {
				if o := live[p.name]; o != nil {
					replaced = append(replaced, o)
					sw.Replaced = append(sw.Replaced, p.name)
				} else {
					sw.Started = append(sw.Started, p.name)
				}
				live[p.name] = p
			}
			stopAll(replaced)
		}
		sw.Stopped = append(sw.Stopped, d.retire(live, kept, func(p *proc) bool { return p.workload.Service == svc })...)
	}
	// Services t no longer has: entry points first, as Stop does.
	sw.Stopped = append(sw.Stopped, d.retire(live, kept, func(p *proc) bool { return p.workload.Entry })...)
	sw.Stopped = append(sw.Stopped, d.retire(live, kept, func(*proc) bool { return true })...)
	d.mu.Lock()
	d.endpoints, d.topo = endpoints, t
	d.mu.Unlock()
	return sw, nil
}

// bringUp starts step's processes and waits until each says it serves. On
// error it stops them all.
func (d *Deployment) bringUp(ctx context.Context, step []*proc) error {
	for _, p := range step {
		p.announced, p.firstExit = make(chan struct{}), make(chan struct{})
		go p.supervise(d)
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.ReadyTimeout)
	defer cancel()
	for _, p := range step {
		var err error
		select {
		case <-p.announced:
			continue
		case <-p.firstExit:
			p.mu.Lock()
			err = fmt.Errorf("local: the new %s exited (%s) before it served; the old one keeps serving; its last output:\n%s", p.name, p.status, p.tail.String())
			p.mu.Unlock()
		case <-ctx.Done():
			err = ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("local: the new %s did not serve within %s; the old one keeps serving; its last output:\n%s", p.name, d.opts.ReadyTimeout, p.tail.String())
			}
		}
		stopAll(step)
		return err
	}
	return nil
}

// retire stops the live processes that match and that the new topology
// does not keep, closes their sockets, and returns their names.
func (d *Deployment) retire(live map[string]*proc, kept map[string]bool, match func(*proc) bool) []string {
	var gone []*proc
	var names []string
	for _, p := range d.current() {
		if !kept[p.name] && live[p.name] == p && match(p) {
			gone = append(gone, p)
			names = append(names, p.name)
		}
	}
	stopAll(gone)
	for _, p := range gone {
		p.socket.Close()
		delete(live, p.name)
	}
	return names
}

// publish records what runs after an Update: the processes of next that
// are live, in next's order, then the old ones still live.
func (d *Deployment) publish(next []*proc, live map[string]*proc) {
	var procs []*proc
	seen := map[*proc]bool{}
	for _, p := range next {
		if q := live[p.name]; q != nil && !seen[q] {
			procs, seen[q] = append(procs, q), true
		}
	}
	for _, p := range d.current() {
		if live[p.name] == p && !seen[p] {
			procs, seen[p] = append(procs, p), true
		}
	}
	d.mu.Lock()
	d.procs = procs
	d.mu.Unlock()
}

// services lists t's services in order.
func services(t *patterns.Topology) []string {
	var out []string
	for _, w := range t.Workloads {
		if !slices.Contains(out, w.Service) {
			out = append(out, w.Service)
		}
	}
	return out
}
