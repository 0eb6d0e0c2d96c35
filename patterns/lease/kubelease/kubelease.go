// Package kubelease takes kiln's leases on Kubernetes: each lease of a
// service is a coordination.k8s.io/v1 Lease object, which kiln renders with
// the service, and the service's pods elect its holder through client-go's
// leader election.
//
// kubelease never creates a Lease object: the pods' Role may only get and
// update the Leases kiln rendered for their service.
//
// # Fencing tokens
//
// client-go gives no fencing token, but a Lease's spec.leaseTransitions is
// one, because every acquisition uses a holder identity of its own
// (lease.Holder) and client-go's leaderelection.go (v0.33) writes it so:
//   - every write is an Update of the object it last read, so the API
//     server refuses it (409 Conflict) if anyone wrote in between: the
//     writes form one history, each based on the one before;
//   - a write by a new holder, over an expired or released lease, sets
//     leaseTransitions to the value it read plus one;
//   - a renewal by the holder, and its release (holderIdentity "", 1s
//     duration), keep the value they read;
//   - the create path would start again from 0, but it never runs: the
//     object always exists, kiln rendered it (and the Role forbids create).
//
// So the value an acquisition writes is larger than that of every earlier
// acquisition, and stays its own while it holds the lease. The count starts
// again only when the Lease object is deleted and rendered anew: when the
// lease leaves the service's spec, or by kiln down, which returns only
// once every pod that could hold it is gone. Anyone else who may update
// the Lease can break the count; kiln's Role lets only the service's pods.
package kubelease

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/kiln-dev/kiln/patterns/lease"
)

// ObjectName is the name of the Lease object that holds service's lease
// called name. Both are DNS labels, so "kv.compactor" is a DNS subdomain,
// as a Lease's name must be, and no two services' leases share one.
func ObjectName(service, name string) string { return service + "." + name }

// New is a Backend that takes service's leases from the Lease objects in
// namespace, through client (a Clientset's CoordinationV1() will do).
func New(client coordinationv1client.LeasesGetter, namespace, service string) lease.Backend {
	return &backend{client: client, namespace: namespace, service: service}
}

// serviceAccountDir is where a pod finds its service account's token, its
// CA and its namespace.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InCluster is the Backend of a process in a pod: it reaches the API
// server with the pod's service account, and takes service's leases in
// the pod's namespace.
func InCluster(service string) (lease.Backend, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("kubelease: no in-cluster API server config (kiln mounts a service account token only in the pods of a service that declares leases): %w", err)
	}
	ns, err := os.ReadFile(serviceAccountDir + "/namespace")
	if err != nil {
		return nil, fmt.Errorf("kubelease: the pod's namespace, from its service account: %w", err)
	}
	c, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubelease: %w", err)
	}
	return New(c, strings.TrimSpace(string(ns)), service), nil
}

type backend struct {
	client    coordinationv1client.LeasesGetter
	namespace string
	service   string
}

// Acquire implements lease.Backend. It campaigns with client-go's
// LeaderElector at client-go's default ratios (15s lease, 10s renew
// deadline, 2s retry), scaled to d: a holder that cannot renew gives the
// lease up after at most 0.8d, before any other process may take it.
//
// Acquire fails, rather than waiting forever, once the Lease object has
// been missing, or the pod forbidden to read or update it, for d.
func (b *backend) Acquire(ctx context.Context, name string, d time.Duration) (*lease.Lease, error) {
	obj := ObjectName(b.service, name)
	if d < time.Second || d%time.Second != 0 {
		return nil, fmt.Errorf("kubelease: lease %s: duration %s must be a whole number of seconds, at least 1s (a Lease counts seconds)", obj, d)
	}
	host, err := os.Hostname() // the pod's name
	if err != nil {
		host = b.service
	}
	lock := &fenced{
		LeaseLock: resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: b.namespace, Name: obj},
			Client:     b.client,
			LockConfig: resourcelock.ResourceLockConfig{Identity: lease.Holder(host, os.Getpid())},
		},
		patience: d,
		failed:   make(chan struct{}),
		down:     make(chan struct{}),
	}
	started := make(chan struct{})
	renewDeadline := 2 * d / 3
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   d,
		RenewDeadline:   renewDeadline,
		RetryPeriod:     d * 2 / 15,
		ReleaseOnCancel: true,
		Name:            lock.Describe(),
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(started) },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		panic(err) // the ratios above always pass its checks
	}
	// The elector outlives ctx's end by the release it then does.
	ectx, stop := context.WithCancel(context.WithoutCancel(ctx))
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		le.Run(ectx)
	}()
	select {
	case <-started:
	case <-ctx.Done():
		stop()
		<-stopped
		return nil, ctx.Err()
	case <-lock.failed:
		stop()
		<-stopped
		return nil, fmt.Errorf("kubelease: lease %s: %w", name, lock.failure())
	}
	keep := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case <-lock.down:
		case <-stopped:
		}
		stop()
		return lock.lossCause(renewDeadline)
	}
	release := func() {
		stop()
		<-stopped
	}
	return lease.Hold(ctx, name, lock.token(), keep, release), nil
}

// fenced is the elector's lock, which it watches: it learns the fencing
// token of the acquisition, when the elector steps down, and why it cannot
// acquire.
type fenced struct {
	resourcelock.LeaseLock
	patience time.Duration // how long a missing or forbidden Lease is borne

	mu         sync.Mutex
	acquired   bool
	transition uint64        // leaseTransitions, once acquired
	holder     string        // the holder last seen, when not this one
	taken      bool          // another process wrote the lease since it was acquired
	lastErr    error         // the last failed request
	refusing   time.Time     // since when requests are refused
	refusedGet bool          // the last refusal was of a read, which a read can end
	refusal    error         // why
	failed     chan struct{} // closed once refused for patience
	down       chan struct{} // closed when the elector gives the lease up
	stepped    bool
}

func (f *fenced) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := f.LeaseLock.Get(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil:
		if f.refusedGet {
			f.refusing = time.Time{}
		}
		if h := rec.HolderIdentity; h != f.Identity() {
			f.holder = h
			// Once deposed, client-go keeps trying to renew until its
			// renew deadline: step down at once instead.
			if f.acquired {
				f.taken = true
				f.stepDown()
			}
		}
	case apierrors.IsNotFound(err):
		f.refusedGet = true
		f.refuse(fmt.Errorf("Lease %s does not exist: kiln renders it with the service that declares the lease; deploy the app again", f.Describe()))
	case apierrors.IsForbidden(err):
		f.refusedGet = true
		f.refuse(fmt.Errorf("the pod may not read Lease %s (kiln's Role for the service grants get and update on it): %w", f.Describe(), err))
	default:
		f.lastErr = err
	}
	return rec, raw, err
}

// Create refuses: see the package doc.
func (f *fenced) Create(context.Context, resourcelock.LeaderElectionRecord) error {
	return fmt.Errorf("Lease %s does not exist, and kubelease does not create Leases", f.Describe())
}

func (f *fenced) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	f.mu.Lock()
	if ler.HolderIdentity != f.Identity() {
		// Only a release writes another identity: the elector stepped down.
		f.stepDown()
	}
	f.mu.Unlock()
	err := f.LeaseLock.Update(ctx, ler)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err == nil && ler.HolderIdentity == f.Identity() && !f.acquired:
		f.acquired, f.transition = true, uint64(ler.LeaderTransitions)
		f.holder, f.lastErr = "", nil // what the campaign saw is past
	case apierrors.IsForbidden(err):
		f.refusedGet = false
		f.refuse(fmt.Errorf("the pod may not update Lease %s (kiln's Role for the service grants get and update on it): %w", f.Describe(), err))
	case err != nil:
		f.lastErr = err
	}
	return err
}

// refuse notes a refusal that acquiring cannot get past; once refusals
// last patience, Acquire gives up. f.mu is held.
func (f *fenced) refuse(err error) {
	f.refusal = err
	if f.refusing.IsZero() {
		f.refusing = time.Now()
	}
	if time.Since(f.refusing) >= f.patience && !f.acquired {
		select {
		case <-f.failed:
		default:
			close(f.failed)
		}
	}
}

func (f *fenced) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refusal
}

// stepDown tells keep the lease is no longer held. f.mu is held.
func (f *fenced) stepDown() {
	if !f.stepped {
		f.stepped = true
		close(f.down)
	}
}

func (f *fenced) token() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.transition
}

// lossCause says why the elector gave a held lease up.
func (f *fenced) lossCause(renewDeadline time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.taken && f.holder != "":
		return fmt.Errorf("%s holds it now", f.holder)
	case f.taken:
		return errors.New("another process released it")
	case f.lastErr != nil:
		return fmt.Errorf("not renewed within %s: %w", renewDeadline, f.lastErr)
	}
	return errors.New("not renewed within " + renewDeadline.String())
}
