package local

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/patterns/lease"
)

// leaseTable is the lock the driver holds for its processes: the leases
// that sdk.Lead and sdk.Lock take, served on a loopback port of its own
// to the processes of the services that declare any (lease.EnvURL).
type leaseTable struct {
	*lease.Table
	url string
	srv *http.Server
}

// leaseURL starts the deployment's lease table if t needs one and it has
// none yet, and returns its URL, or "" when t takes no lease.
func (d *Deployment) leaseURL(t *patterns.Topology) (string, error) {
	need := false
	for _, w := range t.Workloads {
		need = need || len(w.Leases) > 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.leases != nil:
		return d.leases.url, nil
	case !need:
		return "", nil
	}
	dir, err := d.opts.stateDir(t.App)
	if err != nil {
		return "", err
	}
	table, err := lease.NewTable(filepath.Join(dir, "leases.json"))
	if err != nil {
		return "", fmt.Errorf("local: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("local: the lease table's port: %w", err)
	}
	srv := &http.Server{Handler: table, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	d.leases = &leaseTable{Table: table, url: "http://" + ln.Addr().String(), srv: srv}
	return d.leases.url, nil
}

// table is the deployment's lease table, or nil before one was needed.
func (d *Deployment) table() *leaseTable {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.leases
}

// exited frees the leases of a process that exited, rather than leave the
// others waiting for them to expire.
func (d *Deployment) exited(pid int) {
	if l := d.table(); l != nil {
		l.ReleasePID(pid)
	}
}

// closeLeases stops the lease table, once no process is left to ask it.
func (d *Deployment) closeLeases() {
	if l := d.table(); l != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l.srv.Shutdown(ctx)
	}
}
