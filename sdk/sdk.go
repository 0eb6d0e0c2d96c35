// Package sdk is what a program imports to become a kiln service. One call
// from main, Run, declares the service's pattern and hands over its handler:
//
//	func main() {
//		sdk.Run(spec.Service{
//			Name:  "kv",
//			Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}},
//		}, newStore())
//	}
//
// A program of several services declares them on an App, and reaches one
// from another by name with App.Dial (see Conn for how each target wires
// the name to an address).
//
// A job or cron service is declared with App.Job and a function that runs to
// completion instead of a handler.
//
// Started by a developer (go run .), the program is the driver: it brings up
// every service's whole topology on this machine and prints where each
// serves (--port N or KILN_PORT sets the first entry's port), then serves
// its dashboard (see package dashboard) and prints where: --dashboard-port
// N or KILN_DASHBOARD_PORT sets its port, --no-dashboard or
// KILN_NO_DASHBOARD=1 turns it off. Started by a deployer with KILN_ROLE set, it serves that one role
// of the service KILN_SERVICE names. With KILN_ROLE=describe it prints its
// spec as JSON.
package sdk

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/internal/restart"
	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// Option adds to a service what its spec cannot hold, such as Go functions.
type Option func(*config)

type config struct {
	app        string
	keyName    string
	keyFunc    patterns.KeyFunc
	gatherName string
	gather     patterns.GatherFunc
	leaders    []leader
}

// AppName names the app; it defaults to the service's name.
func AppName(name string) Option { return func(c *config) { c.app = name } }

// KeyFunc makes fn the shard key rule of a shard service. name is what the
// spec records (its key.func field). fn sees each request before the
// router forwards it, and must not read its body.
func KeyFunc(name string, fn func(*http.Request) (string, error)) Option {
	return func(c *config) { c.keyName, c.keyFunc = name, fn }
}

// Gather makes fn the gather of a scatter/gather service. Each leaf's answer
// is decoded from JSON into a T, and fn's result is encoded as the answer.
// name is what the spec records (its scatter.gather field).
func Gather[T any](name string, fn func(parts []T) (T, error)) Option {
	return GatherResponses(name, func(parts []patterns.LeafResponse) (patterns.Response, error) {
		values := make([]T, len(parts))
		for i, p := range parts {
			if err := json.Unmarshal(p.Body, &values[i]); err != nil {
				return patterns.Response{}, &patterns.LeafError{Leaf: p.Leaf, Err: fmt.Errorf("answer does not decode as %T: %w", values[i], err)}
			}
		}
		out, err := fn(values)
		if err != nil {
			return patterns.Response{}, err
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(out); err != nil {
			return patterns.Response{}, err
		}
		return patterns.Response{Header: http.Header{"Content-Type": {"application/json"}}, Body: buf.Bytes()}, nil
	})
}

// GatherResponses is Gather for functions that work on raw answers.
func GatherResponses(name string, fn patterns.GatherFunc) Option {
	return func(c *config) { c.gatherName, c.gather = name, fn }
}

// Instance says which process of the topology this is.
type Instance struct {
	// Role is "router", "root", "leaf", "replica" or "job"; "" in the
	// driver, and "probe" when the binary runs as a health check
	// (--kiln-probe, on targets without HTTP probes), which serves
	// nothing: main's code runs in every one of these, so code that holds
	// anything (a database file, a lock) checks the role first.
	Role    string
	Service string
	Index   int // shard, leaf or replica index; a job run's completion index
	Count   int // how many shards, leaves or replicas there are; a job's completions
	// Data is the directory of this instance's own storage, which it
	// keeps across restarts and redeploys (spec.Storage); "" when its
	// service declares none.
	Data string
}

// Owns says whether key belongs to this shard: the router of a shard
// service whose key rule yields key sends it here. After the shard count
// changed, a shard hands the keys it no longer owns over to their new
// shard (examples/kvstore shows how).
func (in Instance) Owns(key string) bool {
	return patterns.ShardOf(key, in.Count) == in.Index
}

// Self describes this process. A leaf uses it to know which part of the data
// it holds. In the driver it reports index 0 of 1.
func Self() Instance {
	in := Instance{Role: os.Getenv(patterns.EnvRole), Service: os.Getenv(patterns.EnvService), Count: 1, Data: os.Getenv(patterns.EnvData)}
	if len(os.Args) == 3 && os.Args[1] == patterns.ProbeArg {
		in.Role = "probe" // the container's environment, but not its role
	}
	if i, err := strconv.Atoi(cmp.Or(os.Getenv(patterns.EnvIndex), os.Getenv(EnvCompletionIndex))); err == nil {
		in.Index = i
	}
	if n, err := strconv.Atoi(os.Getenv(patterns.EnvCount)); err == nil && n > 0 {
		in.Count = n
	}
	return in
}

// Run runs the service and exits the program. See the package comment for
// what it does in each role. It is NewApp with one service.
func Run(svc spec.Service, handler http.Handler, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	a := NewApp(c.app)
	a.Service(svc, handler, opts...)
	a.Run()
}

// App is a program that declares an app of several services. Every role of
// every service is this same binary; the one a process serves is chosen by
// its environment.
//
//	app := sdk.NewApp("shop")
//	carts := app.Dial("carts")
//	app.Service(spec.Service{Name: "web", Simple: &spec.Simple{Replicas: 2}}, newWeb(carts))
//	app.Service(spec.Service{Name: "carts", Shard: ...}, newCarts())
//	app.Run()
type App struct {
	name      string
	services  []service
	conns     []*Conn
	transport http.RoundTripper // shared by conns
}

type service struct {
	spec    spec.Service
	handler http.Handler
	job     func(context.Context) error // for a job or cron service
	cfg     config
}

// NewApp starts declaring an app called name ("" names it after its first
// service).
func NewApp(name string) *App { return &App{name: name} }

// Service adds a service with its handler. opts give it its Go key
// function or gather.
func (a *App) Service(svc spec.Service, handler http.Handler, opts ...Option) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	a.services = append(a.services, service{spec: svc, handler: handler, cfg: c})
}

// Run runs the app and exits the program. It returns only to exit: 0 when
// the driver was stopped with Ctrl-C, 1 on an error, 2 when the program
// refuses its configuration (an invalid spec, an unknown role, a Dial of a
// service the app does not have). A driver whose app has jobs exits with
// the status of a failed job's run (see App.Job).
func (a *App) Run() {
	err := a.run(context.Background(), os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kiln:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(restart.ExitUsage)
		}
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) && ec.ExitCode() > 0 {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
	os.Exit(0)
}

// usageError marks errors that exit with status 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func (a *App) run(ctx context.Context, args []string, stdout io.Writer) error {
	// A health check or a pod's holder: neither serves the app, so neither
	// needs its spec or its services.
	if len(args) == 2 && args[0] == patterns.ProbeArg {
		return probe(ctx, args[1])
	}
	if patterns.Role(os.Getenv(patterns.EnvRole)) == patterns.RolePause {
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return hold(ctx)
	}
	app, err := a.spec()
	if err != nil {
		return usageError{err}
	}
	role := patterns.Role(os.Getenv(patterns.EnvRole))
	switch role {
	case patterns.RoleDescribe:
		b, err := app.MarshalStable()
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	case "":
		// The driver's app is the program's own: every Dial must name one
		// of its services before anything starts.
		if err := a.resolve(app.Name, discoveryOf(app)); err != nil {
			return usageError{err}
		}
		return drive(ctx, app, args, stdout)
	}
	// A role's app is the one its deployer runs, which may hold services
	// built from other programs.
	services, err := patterns.ParseDiscovery(os.Getenv(patterns.EnvServices))
	if err != nil {
		return usageError{err}
	}
	if err := a.resolve(app.Name, services); err != nil {
		return usageError{err}
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if role == patterns.RoleJob {
		return a.runJob(ctx, app)
	}
	return a.serveRole(ctx, app, role)
}

// spec is the app the program declares, with defaults set, validated.
func (a *App) spec() (*spec.App, error) {
	app := &spec.App{Name: a.name}
	for _, s := range a.services {
		svc, c := s.spec, s.cfg
		if c.keyFunc != nil && svc.Shard != nil && svc.Shard.Key == (spec.Key{}) {
			svc.Shard.Key.Func = c.keyName
		}
		if c.gather != nil && svc.Scatter != nil && svc.Scatter.Gather == "" {
			svc.Scatter.Gather = c.gatherName
		}
		declareLeases(&svc, &c)
		if err := s.declared(); err != nil {
			return nil, err
		}
		app.Services = append(app.Services, svc)
	}
	app.SetDefaults()
	if err := app.Validate(); err != nil {
		return nil, fmt.Errorf("invalid app:\n%w", err)
	}
	return app, nil
}

// discoveryOf lists app's services with no address: enough to check names.
func discoveryOf(app *spec.App) patterns.Discovery {
	d := make(patterns.Discovery, len(app.Services))
	for i, s := range app.Services {
		d[i].Service = s.Name
	}
	return d
}

func (a *App) serveRole(ctx context.Context, app *spec.App, role patterns.Role) error {
	name := os.Getenv(patterns.EnvService)
	svc := app.Service(name)
	if svc == nil {
		return usageError{fmt.Errorf("%s=%q names no service of this program (it has %s)", patterns.EnvService, name, strings.Join(quoted(discoveryOf(app).Names()), ", "))}
	}
	var s *service
	for i := range a.services {
		if a.services[i].spec.Name == name {
			s = &a.services[i]
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var h http.Handler
	var err error
	switch role {
	case patterns.RoleLeaf, patterns.RoleReplica:
		h = patterns.Leaf(a.withCalls(s.handler))
	case patterns.RoleRouter, patterns.RoleRoot:
		peers, perr := parsePeers(os.Getenv(patterns.EnvPeers))
		if perr != nil {
			return usageError{perr}
		}
		opts := patterns.Options{KeyFunc: s.cfg.keyFunc, Gather: s.cfg.gather, Logger: log}
		if role == patterns.RoleRoot {
			h, err = patterns.NewRoot(svc, peers, opts)
		} else {
			h, err = patterns.NewRouter(svc, peers, opts)
		}
	default:
		return usageError{fmt.Errorf("%s=%q is not a role: use router, root, leaf, replica or describe", patterns.EnvRole, role)}
	}
	if err != nil {
		return err
	}
	if w, ok := h.(patterns.Warmer); ok && os.Getenv(patterns.EnvWarm) != "0" {
		// Before it says it serves, so that a router replacing another
		// (kiln dev's rolls, a new pod) takes its first requests with
		// connections open; bounded, since a backend may not be up yet.
		wctx, cancel := context.WithTimeout(ctx, warmTimeout)
		w.Warm(wctx)
		cancel()
	}
	ln, err := listener(svc, role == patterns.RoleRouter)
	if err != nil {
		return err
	}
	// The Docker target's Roll waits for this line, role, service and
	// index first, before it stops the program it replaces on the same
	// socket (deployer/docker's isServing).
	log.Info("serving", "role", role, "service", svc.Name, "index", Self().Index, "addr", ln.Addr().String(), "pid", os.Getpid())
	// Connections wait in the socket's queue until Serve accepts them, so
	// saying ready before it starts loses none.
	if err := announceReady(); err != nil {
		return err
	}
	if role == patterns.RoleLeaf || role == patterns.RoleReplica {
		// Leaders stop with the process, and give their leases up before
		// it exits, so that another takes over at once.
		lctx, stop := context.WithCancel(ctx)
		defer lead(lctx, s.cfg.leaders, log)()
		defer stop()
	}
	return patterns.Serve(ctx, ln, h, patterns.DefaultGrace)
}

// warmTimeout bounds a router's or root's dials to its backends before it
// serves.
const warmTimeout = 2 * time.Second

// announceReady writes a line to the pipe KILN_READY_FD names, if any.
func announceReady() error {
	fd := os.Getenv(patterns.EnvReadyFD)
	if fd == "" {
		return nil
	}
	n, err := strconv.Atoi(fd)
	if err != nil {
		return usageError{fmt.Errorf("%s=%q is not a file descriptor", patterns.EnvReadyFD, fd)}
	}
	f := os.NewFile(uintptr(n), "kiln-ready")
	defer f.Close()
	if _, err := f.WriteString("ready\n"); err != nil {
		return fmt.Errorf("%s=%d: %w", patterns.EnvReadyFD, n, err)
	}
	return nil
}

// probe asks url once, within a second.
func probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if !patterns.Ready(ctx, &http.Client{}, url) {
		return fmt.Errorf("%s: not ready", url)
	}
	return nil
}

func quoted(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strconv.Quote(n)
	}
	return out
}

func parsePeers(s string) ([]*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("%s is empty: a router or root needs its backends' URLs", patterns.EnvPeers)
	}
	var out []*url.URL
	for _, p := range strings.Split(s, ",") {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%s: %q is not a URL like http://host:port", patterns.EnvPeers, p)
		}
		out = append(out, u)
	}
	return out, nil
}

// listener is the socket a deployer handed down, the one the pod's holder
// keeps, or a new one on KILN_ADDR or the service's port.
//
// A router's new socket sends its clients no TCP keep-alive probes, as
// nginx sends none by default: its lane closes idle connections itself,
// and turning the probes on costs four setsockopt calls per accepted
// connection, a fifth of its system calls when each request comes on a
// connection of its own. (A socket handed down keeps Go's default.)
func listener(svc *spec.Service, router bool) (net.Listener, error) {
	if fd := os.Getenv(patterns.EnvListenFD); fd != "" {
		n, err := strconv.Atoi(fd)
		if err != nil {
			return nil, usageError{fmt.Errorf("%s=%q is not a file descriptor", patterns.EnvListenFD, fd)}
		}
		f := os.NewFile(uintptr(n), "kiln-listener")
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("%s=%d: %w", patterns.EnvListenFD, n, err)
		}
		return ln, nil
	}
	if from := os.Getenv(patterns.EnvListenFrom); from != "" {
		return handedListener(from)
	}
	addr := os.Getenv(patterns.EnvAddr)
	if addr == "" {
		addr = ":" + strconv.Itoa(svc.HandlerPort())
	}
	var lc net.ListenConfig
	if router {
		lc.KeepAlive = -1
	}
	return lc.Listen(context.Background(), "tcp", addr)
}
