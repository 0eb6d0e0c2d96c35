package kubelease_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"

	kube "github.com/kiln-dev/kiln/deployer/kubernetes"
	"github.com/kiln-dev/kiln/internal/e2e"
	"github.com/kiln-dev/kiln/patterns/lease"
	"github.com/kiln-dev/kiln/patterns/lease/kubelease"
	"github.com/kiln-dev/kiln/spec"
)

// The tests' electing processes are this test binary run again with
// envHelper set: "lead" runs lease.Lead, "lock" takes the lease once and
// gives it up when told "release" on stdin. They print one line per event:
// "leading|lost|locked|released <token> <unix nanoseconds> [why]".
const (
	envHelper    = "KUBELEASE_TEST_HELPER"
	envServer    = "KUBELEASE_TEST_SERVER"
	envCA        = "KUBELEASE_TEST_CA"
	envToken     = "KUBELEASE_TEST_TOKEN"
	envNamespace = "KUBELEASE_TEST_NAMESPACE"
	envService   = "KUBELEASE_TEST_SERVICE"
	envLease     = "KUBELEASE_TEST_LEASE"
	envDuration  = "KUBELEASE_TEST_DURATION"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envHelper); mode != "" {
		if err := helper(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper(mode string) error {
	d, err := time.ParseDuration(os.Getenv(envDuration))
	if err != nil {
		return err
	}
	cfg := &rest.Config{Host: os.Getenv(envServer), BearerTokenFile: os.Getenv(envToken), TLSClientConfig: rest.TLSClientConfig{CAFile: os.Getenv(envCA)}}
	client, err := coordinationv1client.NewForConfig(cfg)
	if err != nil {
		return err
	}
	b := kubelease.New(client, os.Getenv(envNamespace), os.Getenv(envService))
	name := os.Getenv(envLease)
	say := func(event string, token uint64, why string) {
		fmt.Printf("%s %d %d %s\n", event, token, time.Now().UnixNano(), why)
	}
	ctx := context.Background()
	switch mode {
	case "lead":
		return lease.Lead(ctx, b, name, d, func(ctx context.Context, token uint64) error {
			say("leading", token, "")
			<-ctx.Done()
			say("lost", token, context.Cause(ctx).Error())
			return nil
		})
	case "lock":
		l, err := b.Acquire(ctx, name, d)
		if err != nil {
			return err
		}
		say("locked", l.Token(), "")
		go func() {
			<-l.Context().Done()
			if l.Lost() {
				say("lost", l.Token(), context.Cause(l.Context()).Error())
			}
		}()
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			if in.Text() == "release" {
				l.Release()
				say("released", l.Token(), "")
				return nil
			}
		}
		return in.Err()
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// electing is a namespace holding what kiln renders for an app's leases,
// and the credentials of one service's electing pods.
type electing struct {
	ns    string
	admin *kubernetes.Clientset
	// The pods' service account: its token and the cluster's CA, in
	// files for the helpers and in Pod for this process.
	server, tokenFile, caFile string
	Pod                       *rest.Config
}

// render applies, into a fresh restricted namespace, the Leases,
// ServiceAccounts, Roles and RoleBindings kiln renders for app, and takes
// a token of the service account of service's electing pods (its replicas).
func render(t *testing.T, service string, services ...spec.Service) *electing {
	t.Helper()
	cfg := e2e.Cluster(t)
	ns := e2e.Namespace(t, cfg, "kubelease")
	app := &spec.App{Name: "elect", Services: services}
	app.SetDefaults()
	objs, err := kube.Render(app, kube.Options{Image: "kiln.test/elect:1"})
	if err != nil {
		t.Fatal(err)
	}
	objs = slices.DeleteFunc(objs, func(o metav1.Object) bool {
		k := fmt.Sprintf("%T", o)
		return !strings.HasSuffix(k, ".Lease") && !strings.HasSuffix(k, ".ServiceAccount") && !strings.HasSuffix(k, ".Role") && !strings.HasSuffix(k, ".RoleBinding")
	})
	c, err := kube.Connect(kube.ClientOptions{Kubeconfig: e2e.Kubeconfig(), Namespace: ns}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Apply(ctx, app.Name, objs); err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	account := service + "-replica"
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, account, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for service account %s: %v", account, err)
	}
	ca := cfg.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	e := &electing{ns: ns, admin: admin, server: cfg.Host, tokenFile: filepath.Join(dir, "token"), caFile: filepath.Join(dir, "ca.crt")}
	if err := os.WriteFile(e.tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	e.Pod = &rest.Config{Host: cfg.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
	return e
}

func ptr[T any](v T) *T { return &v }

func (e *electing) leases(t *testing.T) coordinationv1client.LeaseInterface {
	t.Helper()
	c, err := coordinationv1client.NewForConfig(e.Pod)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leases(e.ns)
}

// event is a line a helper printed, or a signal the test sent one.
type event struct {
	who   string
	kind  string // leading, lost, locked, released; killed, stopped, continued
	token uint64
	at    time.Time
	why   string
}

func (ev event) String() string {
	s := fmt.Sprintf("%s %s %d at %s", ev.who, ev.kind, ev.token, ev.at.Format("15:04:05.000"))
	if ev.why != "" {
		s += " (" + ev.why + ")"
	}
	return s
}

// record is what every process of a test did, in the order it happened.
type record struct {
	mu     sync.Mutex
	events []event
}

func (r *record) add(ev event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *record) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.events)
	slices.SortStableFunc(out, func(a, b event) int { return a.at.Compare(b.at) })
	return out
}

// next waits up to timeout for an event that matches and is not among
// the first seen events.
func (r *record) next(t *testing.T, seen int, timeout time.Duration, match func(event) bool) (event, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		evs := slices.Clone(r.events[seen:])
		r.mu.Unlock()
		for _, ev := range evs {
			if match(ev) {
				return ev, true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return event{}, false
}

func (r *record) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *record) dump(t *testing.T) {
	t.Helper()
	for _, ev := range r.all() {
		t.Log(ev)
	}
}

// proc is a helper process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *bytes.Buffer
	rec    *record
	done   chan struct{}
}

func (e *electing) start(t *testing.T, rec *record, name, mode, service, leaseName string, d time.Duration) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		envHelper+"="+mode, envServer+"="+e.server, envCA+"="+e.caFile, envToken+"="+e.tokenFile,
		envNamespace+"="+e.ns, envService+"="+service, envLease+"="+leaseName, envDuration+"="+d.String())
	p := &proc{name: name, cmd: cmd, stderr: &bytes.Buffer{}, rec: rec, done: make(chan struct{})}
	cmd.Stderr = &syncWriter{w: p.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.SplitN(sc.Text(), " ", 4)
			if len(f) < 3 {
				continue
			}
			token, _ := strconv.ParseUint(f[1], 10, 64)
			ns, _ := strconv.ParseInt(f[2], 10, 64)
			ev := event{who: name, kind: f[0], token: token, at: time.Unix(0, ns)}
			if len(f) == 4 {
				ev.why = f[3]
			}
			rec.add(ev)
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s's stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

// signal sends sig to the process and records it; for SIGKILL, once the
// process is gone.
func (p *proc) signal(t *testing.T, sig syscall.Signal, kind string) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	if sig == syscall.SIGKILL {
		<-p.done
	}
	p.rec.add(event{who: p.name, kind: kind, at: time.Now()})
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// Test leases are short so that the tests take seconds. A new holder
// takes a lease that nobody renews after at most d (from the last renewal
// it saw) plus two retries, each up to 1.2 retry periods: kiln's retry
// period is d*2/15.
const (
	d        = 2 * time.Second
	retry    = d * 2 / 15
	takeover = d + 5*retry + time.Second // a second for a loaded machine
)

func served(name string, leases ...string) spec.Service {
	s := spec.Service{Name: name, Simple: &spec.Simple{Replicas: 3}}
	for _, l := range leases {
		s.Leases = append(s.Leases, spec.Lease{Name: l, Duration: spec.Duration(d)})
	}
	return s
}

// term is one hold of the lease that a record saw: from "leading" or
// "locked" to "lost", "released" or the holder's kill (or now).
type term struct {
	who        string
	token      uint64
	start, end time.Time
}

func terms(evs []event) []term {
	var out []term
	open := map[string]int{}
	for _, ev := range evs {
		switch ev.kind {
		case "leading", "locked":
			open[ev.who] = len(out)
			out = append(out, term{who: ev.who, token: ev.token, start: ev.at})
		case "lost", "killed", "released":
			if i, ok := open[ev.who]; ok {
				out[i].end = ev.at
				delete(open, ev.who)
			}
		}
	}
	for _, i := range open {
		out[i].end = time.Now()
	}
	return out
}

// checkTerms asserts that terms never overlap and that tokens grow from 1,
// one acquisition at a time. A term may overlap the next only when its
// holder was paused (the next holder's larger token fences it off).
func checkTerms(t *testing.T, ts []term, paused map[string]bool) {
	t.Helper()
	var last term // the unpaused term that ended last
	for i, tm := range ts {
		if want := uint64(i + 1); tm.token != want {
			t.Errorf("term %d (%s) has token %d, want %d: tokens count acquisitions from 1", i, tm.who, tm.token, want)
		}
		if i > 0 && tm.start.Before(last.end) {
			t.Errorf("%s held the lease from %s while %s still held it (until %s): two holders at once",
				tm.who, tm.start.Format("15:04:05.000"), last.who, last.end.Format("15:04:05.000"))
		}
		if !paused[tm.who] && tm.end.After(last.end) {
			last = tm
		}
	}
}

func TestOneOfThreeProcessesLeadsAndAKilledLeaderIsReplacedWithinTheLeaseDuration(t *testing.T) {
	e := render(t, "web", served("web", "leader"))
	rec := &record{}
	procs := map[string]*proc{}
	for _, name := range []string{"a", "b", "c"} {
		procs[name] = e.start(t, rec, name, "lead", "web", "leader", d)
	}
	first, ok := rec.next(t, 0, 30*time.Second, func(ev event) bool { return ev.kind == "leading" })
	if !ok {
		rec.dump(t)
		t.Fatal("no process became leader within 30s")
	}
	leader := first
	for range 2 {
		// The leader keeps the lease for as long as it lives: several
		// renewals here.
		time.Sleep(d)
		seen := rec.len()
		procs[leader.who].signal(t, syscall.SIGKILL, "killed")
		killed := time.Now()
		next, ok := rec.next(t, seen, 3*d, func(ev event) bool { return ev.kind == "leading" })
		if !ok {
			rec.dump(t)
			t.Fatalf("no new leader within %s of killing %s", 3*d, leader.who)
		}
		if took := next.at.Sub(killed); took > takeover {
			t.Errorf("%s led %s after %s was killed, want within %s (lease %s, retry %s)", next.who, took.Round(time.Millisecond), leader.who, takeover, d, retry)
		} else {
			t.Logf("%s led %s after %s was killed (lease %s)", next.who, took.Round(time.Millisecond), leader.who, d)
		}
		leader = next
	}
	time.Sleep(d)
	evs := rec.all()
	ts := terms(evs)
	if len(ts) != 3 {
		t.Errorf("%d terms, want 3: one per process, each killed in turn but the last", len(ts))
	}
	checkTerms(t, ts, nil)
	if t.Failed() {
		rec.dump(t)
	}
}

func TestAPausedLeaderLearnsOnWakingThatItLostTheLeaseToALargerToken(t *testing.T) {
	e := render(t, "web", served("web", "leader"))
	rec := &record{}
	procs := map[string]*proc{}
	for _, name := range []string{"a", "b"} {
		procs[name] = e.start(t, rec, name, "lead", "web", "leader", d)
	}
	old, ok := rec.next(t, 0, 30*time.Second, func(ev event) bool { return ev.kind == "leading" })
	if !ok {
		rec.dump(t)
		t.Fatal("no process became leader within 30s")
	}
	time.Sleep(d)
	seen := rec.len()
	procs[old.who].signal(t, syscall.SIGSTOP, "stopped")
	next, ok := rec.next(t, seen, takeover+d, func(ev event) bool { return ev.kind == "leading" })
	if !ok {
		rec.dump(t)
		t.Fatalf("no new leader within %s of pausing %s", takeover+d, old.who)
	}
	time.Sleep(d)
	seen = rec.len()
	procs[old.who].signal(t, syscall.SIGCONT, "continued")
	woke := time.Now()
	lost, ok := rec.next(t, seen, 2*d, func(ev event) bool { return ev.who == old.who && ev.kind == "lost" })
	if !ok {
		rec.dump(t)
		t.Fatalf("%s did not report losing the lease within %s of waking", old.who, 2*d)
	}
	// On waking its renew deadline has passed: it gives up at once.
	if took := lost.at.Sub(woke); took > time.Second {
		t.Errorf("%s learned it lost the lease %s after waking, want within 1s", old.who, took.Round(time.Millisecond))
	}
	t.Logf("%s learned %s after waking that it lost the lease: %s", old.who, lost.at.Sub(woke).Round(time.Millisecond), lost.why)
	if next.token <= old.token {
		t.Errorf("new leader's token = %d, want > %d, the paused leader's", next.token, old.token)
	}
	ts := terms(rec.all())
	checkTerms(t, ts, map[string]bool{old.who: true})
	if t.Failed() {
		rec.dump(t)
	}
}

func TestALockIsExclusiveAndFreedWhenItsHolderIsKilledOrReleasesIt(t *testing.T) {
	e := render(t, "web", served("web", "lock"))
	rec := &record{}
	a := e.start(t, rec, "a", "lock", "web", "lock", d)
	first, ok := rec.next(t, 0, 30*time.Second, func(ev event) bool { return ev.kind == "locked" })
	if !ok {
		rec.dump(t)
		t.Fatal("a did not take the lock within 30s")
	}
	b := e.start(t, rec, "b", "lock", "web", "lock", d)
	seen := rec.len()
	if ev, ok := rec.next(t, seen, 2*d, func(ev event) bool { return ev.kind == "locked" }); ok {
		t.Fatalf("%s took the lock while a held it", ev)
	}
	seen = rec.len()
	a.signal(t, syscall.SIGKILL, "killed")
	killed := time.Now()
	second, ok := rec.next(t, seen, 3*d, func(ev event) bool { return ev.kind == "locked" })
	if !ok {
		rec.dump(t)
		t.Fatalf("b did not take the lock within %s of killing a", 3*d)
	}
	if took := second.at.Sub(killed); took > takeover {
		t.Errorf("b took the lock %s after a was killed, want within %s", took.Round(time.Millisecond), takeover)
	} else {
		t.Logf("b took the lock %s after a was killed (lease %s)", took.Round(time.Millisecond), d)
	}
	if second.token <= first.token {
		t.Errorf("b's token = %d, want > %d, a's", second.token, first.token)
	}

	e.start(t, rec, "c", "lock", "web", "lock", d)
	seen = rec.len()
	if ev, ok := rec.next(t, seen, d, func(ev event) bool { return ev.kind == "locked" }); ok {
		t.Fatalf("%s took the lock while b held it", ev)
	}
	seen = rec.len()
	if _, err := io.WriteString(b.stdin, "release\n"); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	third, ok := rec.next(t, seen, 3*d, func(ev event) bool { return ev.kind == "locked" })
	if !ok {
		rec.dump(t)
		t.Fatal("c did not take the lock within 3d of b releasing it")
	}
	// A released lease is free at once: c takes it at its next retry.
	if took := third.at.Sub(released); took > 3*retry+time.Second {
		t.Errorf("c took the lock %s after b released it, want within %s", took.Round(time.Millisecond), 3*retry+time.Second)
	} else {
		t.Logf("c took the lock %s after b released it", took.Round(time.Millisecond))
	}
	if third.token <= second.token {
		t.Errorf("c's token = %d, want > %d, b's", third.token, second.token)
	}
	checkTerms(t, terms(rec.all()), nil)
	if t.Failed() {
		rec.dump(t)
	}
}

func TestTheRenderedRoleLetsPodsTakeTheirServicesLeasesAndNothingElse(t *testing.T) {
	e := render(t, "web", served("web", "leader", "lock"), served("other", "leader"))
	ctx := context.Background()
	client, err := coordinationv1client.NewForConfig(e.Pod)
	if err != nil {
		t.Fatal(err)
	}
	web := kubelease.New(client, e.ns, "web")
	for _, name := range []string{"leader", "lock"} {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := web.Acquire(actx, name, d)
		cancel()
		if err != nil {
			t.Fatalf("Acquire(%q) as web's pods = %v, want the lease", name, err)
		}
		if l.Token() != 1 {
			t.Errorf("Acquire(%q).Token() = %d, want 1: the first acquisition of a rendered Lease", name, l.Token())
		}
		l.Release()
	}

	leases := e.leases(t)
	others, err := e.admin.CoordinationV1().Leases(e.ns).Get(ctx, kubelease.ObjectName("other", "leader"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		do   func() error
	}{
		{"get another service's Lease", func() error {
			_, err := leases.Get(ctx, "other.leader", metav1.GetOptions{})
			return err
		}},
		{"update another service's Lease", func() error {
			_, err := leases.Update(ctx, others, metav1.UpdateOptions{})
			return err
		}},
		{"get a Lease its service does not declare", func() error {
			_, err := leases.Get(ctx, "web.other", metav1.GetOptions{})
			return err
		}},
		{"create a Lease", func() error {
			_, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "web.new"}}, metav1.CreateOptions{})
			return err
		}},
		{"delete its own Lease", func() error {
			return leases.Delete(ctx, "web.leader", metav1.DeleteOptions{})
		}},
		{"patch its own Lease", func() error {
			_, err := leases.Patch(ctx, "web.leader", types.MergePatchType, []byte(`{"spec":{"holderIdentity":"x"}}`), metav1.PatchOptions{})
			return err
		}},
		{"list Leases", func() error {
			_, err := leases.List(ctx, metav1.ListOptions{})
			return err
		}},
	} {
		if err := tc.do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s as web's pods: err = %v, want Forbidden", tc.what, err)
		}
	}

	// Taking another service's lease says why it cannot.
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = kubelease.New(client, e.ns, "other").Acquire(actx, "leader", d)
	if want := "the pod may not read Lease " + e.ns + "/other.leader"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Acquire of another service's lease = %v, want an error saying %q", err, want)
	}
}

func TestAcquireSaysWhenTheLeaseObjectIsMissing(t *testing.T) {
	e := render(t, "web", served("web", "leader"))
	ctx := context.Background()
	if err := e.admin.CoordinationV1().Leases(e.ns).Delete(ctx, "web.leader", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	client, err := coordinationv1client.NewForConfig(e.Pod)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = kubelease.New(client, e.ns, "web").Acquire(actx, "leader", d)
	if want := "Lease " + e.ns + "/web.leader does not exist"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Acquire with no Lease object = %v, want an error saying %q", err, want)
	}
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestAcquireSaysWhenThePodMayNotUpdateItsLease(t *testing.T) {
	e := render(t, "web", served("web", "leader"))
	ctx := context.Background()
	roles := e.admin.RbacV1().Roles(e.ns)
	role, err := roles.Get(ctx, "web-replica-leases", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	role.Rules[0].Verbs = []string{"get"}
	if _, err := roles.Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// RBAC learns of the change through a watch: wait until it has.
	pod, err := kubernetes.NewForConfig(e.Pod)
	if err != nil {
		t.Fatal(err)
	}
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
		Namespace: e.ns, Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Name: "web.leader",
	}}}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err := pod.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("web's pods may still update web.leader 10s after their Role lost the verb")
		}
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = kubelease.New(pod.CoordinationV1(), e.ns, "web").Acquire(actx, "leader", d)
	if want := "the pod may not update Lease " + e.ns + "/web.leader"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Acquire with a Role that grants only get = %v, want an error saying %q", err, want)
	}
}

func TestInClusterSaysWhenItIsNotInAPod(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := kubelease.InCluster("web")
	if want := "KUBERNETES_SERVICE_HOST"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("InCluster outside a pod = %v, want an error naming %s", err, want)
	}
}

func TestAcquireRefusesADurationALeaseCannotCount(t *testing.T) {
	_, err := kubelease.New(nil, "ns", "web").Acquire(context.Background(), "leader", 1500*time.Millisecond)
	if want := "whole number of seconds"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Acquire(1.5s) = %v, want an error saying %q", err, want)
	}
}
