package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

type topologyJSON struct {
	App      string        `json:"app"`
	Dev      bool          `json:"dev"`
	Services []serviceJSON `json:"services"`
}

type serviceJSON struct {
	Name     string           `json:"name"`
	Pattern  string           `json:"pattern"`
	Entry    string           `json:"entry"`
	Front    nodeJSON         `json:"front"`
	Backends []nodeJSON       `json:"backends"`
	Key      string           `json:"key,omitempty"`
	Detail   string           `json:"detail,omitempty"`
	Sidecars []spec.Container `json:"sidecars,omitempty"`
	svc      *spec.Service    // nil for a topology built without a spec
	backends *patterns.Workload
}

type nodeJSON struct {
	Name    string `json:"name"`
	Process string `json:"process"`
	Role    string `json:"role,omitempty"`
}

// services lists t's serving services as the page draws them, in t's
// order.
func services(t *patterns.Topology, endpoints patterns.Discovery) []serviceJSON {
	var out []serviceJSON
	for i := range t.Workloads {
		front := &t.Workloads[i]
		if !front.Entry {
			continue
		}
		s := serviceJSON{Name: front.Service, Front: nodeJSON{Name: front.Instance(0), Process: front.Service + "/" + front.Instance(0), Role: string(front.Role)}}
		s.Entry, _ = endpoints.Lookup(front.Service)
		if b := t.Workload(front.Backends); b != nil {
			s.backends = b
			for r := range b.Replicas {
				s.Backends = append(s.Backends, nodeJSON{Name: b.Instance(r), Process: b.Service + "/" + b.Instance(r), Role: string(b.Role)})
			}
		}
		if t.Spec != nil {
			s.svc = t.Spec.Service(front.Service)
		}
		s.describe(front)
		out = append(out, s)
	}
	return out
}

// describe fills in what the spec says of s, or what the workloads tell
// without one.
func (s *serviceJSON) describe(front *patterns.Workload) {
	if s.svc == nil {
		switch {
		case front.Role == patterns.RoleRoot:
			s.Pattern = "scatter"
		case s.backends != nil && s.backends.Stable:
			s.Pattern = "shard"
		default:
			s.Pattern = "simple"
		}
		return
	}
	svc := s.svc
	s.Pattern, s.Sidecars = svc.Pattern(), svc.Sidecars
	switch {
	case svc.Shard != nil:
		s.Key = svc.Shard.Key.String()
	case svc.Scatter != nil:
		sg := svc.Scatter
		s.Detail = fmt.Sprintf("gather %s · %s per leaf · on a leaf's error: %s", sg.Gather, sg.Timeout.D(), sg.OnLeafError)
	case svc.Spread != nil:
		s.Detail = "choice: " + svc.Spread.Choice
	}
}

func (s *Server) topology(w http.ResponseWriter, r *http.Request) {
	t := s.Source.Topology()
	writeJSON(w, topologyJSON{App: t.App, Dev: s.Builds != nil, Services: services(t, s.Source.Endpoints())})
}

type processJSON struct {
	Name     string    `json:"name"`
	Service  string    `json:"service"`
	Instance string    `json:"instance"`
	Role     string    `json:"role"`
	Addr     string    `json:"addr"`
	PID      int       `json:"pid"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
	Restarts int       `json:"restarts"`
	Exit     string    `json:"exit,omitempty"`
}

type statsJSON struct {
	Time      time.Time               `json:"time"`
	Processes []processJSON           `json:"processes"`
	Backends  map[string]*backendJSON `json:"backends"`
	Calls     []callJSON              `json:"calls"`
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	t := s.Source.Topology()
	procs := s.Source.Processes()
	out := statsJSON{Time: time.Now(), Processes: []processJSON{}}
	for _, p := range procs {
		svc, inst, _ := strings.Cut(p.Name, "/")
		role := ""
		for i := range t.Workloads {
			if t.Workloads[i].Name() == p.Workload {
				role = string(t.Workloads[i].Role)
			}
		}
		out.Processes = append(out.Processes, processJSON{Name: p.Name, Service: svc, Instance: inst, Role: role, Addr: p.Addr, PID: p.PID,
			State: string(p.State), Since: p.Since, Restarts: p.Restarts, Exit: p.Exit})
	}
	out.Backends, out.Calls = s.scrape.refresh(r.Context(), out.Processes)
	writeJSON(w, out)
}

type lineJSON struct {
	Time    time.Time `json:"time"`
	Process string    `json:"process"`
	Text    string    `json:"text"`
	Note    bool      `json:"note,omitempty"`
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service, instance := q.Get("service"), q.Get("instance")
	n := 200
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("n=%q: want a positive number of lines", v))
			return
		}
	}
	lines := []lineJSON{}
	for _, p := range s.Source.Processes() {
		svc, inst, _ := strings.Cut(p.Name, "/")
		if (service != "" && svc != service) || (instance != "" && inst != instance) {
			continue
		}
		for _, l := range s.Source.Output(p.Name) {
			lines = append(lines, lineJSON{Time: l.Time, Process: p.Name, Text: l.Text, Note: l.Note})
		}
	}
	slices.SortStableFunc(lines, func(a, b lineJSON) int { return a.Time.Compare(b.Time) })
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	writeJSON(w, map[string]any{"lines": lines})
}

type lookupJSON struct {
	Service string `json:"service"`
	Key     string `json:"key"`
	Shard   int    `json:"shard"`
	Backend string `json:"backend"`
	Process string `json:"process"`
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	name, key := r.URL.Query().Get("service"), r.URL.Query().Get("key")
	var svc *serviceJSON
	t := s.Source.Topology()
	all := services(t, nil)
	for i := range all {
		if all[i].Name == name {
			svc = &all[i]
		}
	}
	switch {
	case svc == nil:
		writeError(w, http.StatusNotFound, fmt.Errorf("app %q has no service %q", t.App, name))
		return
	case svc.Pattern != "shard" || svc.backends == nil:
		writeError(w, http.StatusBadRequest, fmt.Errorf("service %q is a %s service: only shard services map keys to backends", name, svc.Pattern))
		return
	case key == "":
		writeError(w, http.StatusBadRequest, fmt.Errorf("no key: pass ?key="))
		return
	}
	var rule spec.Key
	if svc.svc != nil {
		rule = svc.svc.Shard.Key
	}
	key, i, err := shardFor(rule, svc.backends.Replicas, key)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, lookupJSON{Service: name, Key: key, Shard: i, Backend: svc.Backends[i].Name, Process: svc.Backends[i].Process})
}

// shardFor is the shard of n that input maps to under rule, as the router
// maps it, and the key it used: input is the key itself, or, for a path
// segment or regexp rule, a request path ("/…") to take the key from.
func shardFor(rule spec.Key, n int, input string) (key string, shard int, err error) {
	key = input
	if strings.HasPrefix(input, "/") && (rule.PathSegment > 0 || rule.Regexp != "") {
		extract, err := patterns.KeyExtractor(rule, nil)
		if err != nil {
			return "", 0, err
		}
		req, err := http.NewRequest(http.MethodGet, input, nil)
		if err != nil {
			return "", 0, err
		}
		if key, err = extract(req); err != nil {
			return "", 0, err
		}
	}
	return key, patterns.ShardOf(key, n), nil
}

// Builds keeps the last builds of kiln dev for the page.
type Builds struct {
	mu   sync.Mutex
	list []Build
}

// Build is one build of kiln dev.
type Build struct {
	Time   time.Time `json:"time"`   // when it started
	Change string    `json:"change"` // what changed, briefly; "" for the first build
	Phases []Phase   `json:"phases"`
	Result string    `json:"result"` // "serving", "build failed", "swap failed"
	Error  string    `json:"error,omitempty"`
}

// Phase is one step of a build and how long it took.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// keptBuilds is how many builds Builds keeps.
const keptBuilds = 20

// Add records b.
func (bs *Builds) Add(b Build) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.list = append(bs.list, b)
	if len(bs.list) > keptBuilds {
		bs.list = slices.Delete(bs.list, 0, len(bs.list)-keptBuilds)
	}
}

// List returns the builds kept, newest first.
func (bs *Builds) List() []Build {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	out := slices.Clone(bs.list)
	slices.Reverse(out)
	return out
}

func (s *Server) builds(w http.ResponseWriter, r *http.Request) {
	list := []Build{}
	if s.Builds != nil {
		list = append(list, s.Builds.List()...)
	}
	writeJSON(w, map[string]any{"builds": list})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
