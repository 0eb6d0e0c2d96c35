// Package dashboard serves a live view of an app that runs on the local
// target, in the browser: the topology as a diagram, each backend's
// traffic and state, shard key lookup, process logs and, in kiln dev, the
// builds. The driver (go run ., kiln run, kiln dev) serves it on
// 127.0.0.1; binaries built for images never link it.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary, and
// loads nothing from any other host. It draws what it shows from a JSON
// API, which tests and scripts can use too:
//
//	GET /api/topology   the app as the page draws it: {"app", "dev",
//	                    "services": [{"name", "pattern", "entry" (URL),
//	                    "front": {"process", "role"}, "backends": [{"name",
//	                    "process"}], "key" (shard: the key rule),
//	                    "detail", "sidecars": [{"name", "image"}]}]}
//	GET /api/stats      the live numbers: {"time", "processes": [{"name",
//	                    "service", "instance", "role", "addr", "pid",
//	                    "state", "since", "restarts", "exit"}],
//	                    "backends": {PROCESS: {"requests", "errors",
//	                    "rps", "error_rate", "p50_ms", "p99_ms"}},
//	                    "calls": [{"from", "to", "total", "rps"}]}
//	GET /api/logs       the last lines of the processes' output, oldest
//	                    first: ?service=S&instance=I (both optional),
//	                    &n=N (default 200): {"lines": [{"time", "process",
//	                    "text", "note"}]}; note marks kiln's own lines
//	GET /api/lookup     which shard a key maps to: ?service=S&key=K gives
//	                    {"service", "key", "shard", "backend", "process"};
//	                    a key that starts with "/" is a request path, from
//	                    which a path-segment or regexp rule takes the key
//	GET /api/builds     kiln dev's builds, newest first: {"builds":
//	                    [{"time", "change", "phases": [{"name",
//	                    "seconds"}], "result", "error"}]}
//
// Rates and latencies come from the routers' and roots' own Prometheus
// metrics (kiln_backend_requests_total, kiln_backend_errors_total,
// kiln_backend_request_duration_seconds), and the calls between services
// from each replica's and leaf's patterns.PathCalls. The dashboard reads
// them only while /api/stats is asked, at most once per process per
// second, and the page asks only while it is open and visible: with
// nobody looking, the dashboard sends no request at all.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/deployer/local"
	"github.com/kiln-dev/kiln/patterns"
)

// Source is the running app the dashboard shows. *local.Deployment is
// one.
type Source interface {
	// Topology is what runs; its Spec, when set, adds the key rules and
	// sidecars.
	Topology() *patterns.Topology
	Endpoints() patterns.Discovery
	Processes() []Process
	// Output is the last lines process wrote, oldest first.
	Output(process string) []Line
}

// Process is one process of the app, and Line one line of its output.
type (
	Process = local.Process
	Line    = local.Line
)

var _ Source = (*local.Deployment)(nil)

//go:embed assets
var assets embed.FS

// Server serves the page and its API.
type Server struct {
	Source Source
	// Builds are kiln dev's builds; nil when the app is not run by the
	// dev loop, and the page then shows no builds.
	Builds *Builds
	// Client reads the processes' metrics; nil means a client that gives
	// up after a second.
	Client *http.Client

	once   sync.Once
	mux    *http.ServeMux
	scrape scraper
}

// Handler is the dashboard of src.
func Handler(src Source) http.Handler { return &Server{Source: src} }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.once.Do(s.init)
	s.mux.ServeHTTP(w, r)
}

func (s *Server) init() {
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	s.scrape = scraper{client: client, last: map[string]*sample{}}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed above names the directory
	}
	s.mux = http.NewServeMux()
	s.mux.Handle("GET /", http.FileServerFS(static))
	s.mux.HandleFunc("GET /api/topology", s.topology)
	s.mux.HandleFunc("GET /api/stats", s.stats)
	s.mux.HandleFunc("GET /api/logs", s.logs)
	s.mux.HandleFunc("GET /api/lookup", s.lookup)
	s.mux.HandleFunc("GET /api/builds", s.builds)
}

// Announce is the line a driver prints once the dashboard serves.
func Announce(url string) string { return "kiln: dashboard at " + url }

// Start serves h on 127.0.0.1:port (0 picks a free port), prints
// Announce's line to out, and serves until ctx ends.
func Start(ctx context.Context, port int, h http.Handler, out io.Writer) error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(out, "kiln: dashboard: %v\n", err)
		}
	}()
	fmt.Fprintln(out, Announce("http://"+ln.Addr().String()))
	return nil
}

// Options say whether and where a driver serves the dashboard.
type Options struct {
	// Off serves no dashboard.
	Off bool
	// Port is the dashboard's port on 127.0.0.1; 0 picks a free one.
	Port int
}

// Started is a local.Options.Started that serves the deployment's
// dashboard until ctx ends and announces it on out; nil when o is Off.
func (o Options) Started(ctx context.Context, out io.Writer) func(*local.Deployment) error {
	if o.Off {
		return nil
	}
	return func(d *local.Deployment) error {
		if len(d.Topology().Workloads) == 0 {
			return nil // jobs only: no topology to show
		}
		return Start(ctx, o.Port, Handler(d), out)
	}
}
