package lease

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Table is the lock the local target's driver holds for its processes: the
// state of every lease of an app, served over HTTP to the processes'
// Clients. Besides expiring a lease its holder stopped renewing, it frees
// at once the leases of a process that exited (ReleasePID), which the
// driver, their parent, knows of before any lease could expire.
//
// Fencing tokens count per lease from the last one the table recorded in
// its file, so that they keep growing across runs of the app.
type Table struct {
	path string // where the last token of each lease is kept; "" keeps none

	mux *http.ServeMux

	mu     sync.Mutex
	leases map[string]*entry // by service/name
	tokens map[string]uint64 // the last token of each lease
}

type entry struct {
	holder  string // "" when free
	pid     int
	token   uint64
	expires time.Time
	changed chan struct{} // closed and replaced when the lease is freed
}

// Holding is one lease's state, as Table.List reports it.
type Holding struct {
	Lease   string    `json:"lease"`  // service/name
	Holder  string    `json:"holder"` // "" when free
	PID     int       `json:"pid,omitempty"`
	Token   uint64    `json:"token"` // the last acquisition's
	Expires time.Time `json:"expires,omitzero"`
}

// NewTable is a table that keeps its tokens in the file at path, which it
// creates when missing; "" keeps them in memory only.
func NewTable(path string) (*Table, error) {
	t := &Table{path: path, leases: map[string]*entry{}, tokens: map[string]uint64{}}
	t.routes()
	if path == "" {
		return t, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("lease: %w", err)
	default:
		if err := json.Unmarshal(b, &t.tokens); err != nil {
			return nil, fmt.Errorf("lease: %s: %w (remove the file to start tokens again from 1)", path, err)
		}
	}
	return t, nil
}

// acquire blocks until holder holds key or ctx ends, and returns the
// acquisition's token. A holder that asks again for what it holds gets the
// same token.
func (t *Table) acquire(ctx context.Context, key, holder string, pid int, d time.Duration) (uint64, error) {
	for {
		t.mu.Lock()
		e := t.leases[key]
		if e == nil {
			e = &entry{changed: make(chan struct{})}
			t.leases[key] = e
		}
		now := time.Now()
		live := e.holder != "" && now.Before(e.expires)
		if live && e.holder == holder {
			e.expires = now.Add(d)
			t.mu.Unlock()
			return e.token, nil
		}
		if !live {
			token := t.tokens[key] + 1
			if err := t.record(key, token); err != nil {
				t.mu.Unlock()
				return 0, err
			}
			e.holder, e.pid, e.token, e.expires = holder, pid, token, now.Add(d)
			t.mu.Unlock()
			return token, nil
		}
		changed, wait := e.changed, time.Until(e.expires)
		t.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return 0, ctx.Err()
		}
		timer.Stop()
	}
}

// record writes token as key's last, in memory and in the file.
func (t *Table) record(key string, token uint64) error {
	t.tokens[key] = token
	if t.path == "" {
		return nil
	}
	b, err := json.Marshal(t.tokens)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(t.path), 0o700); err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	tmp := t.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	if err := os.Rename(tmp, t.path); err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	return nil
}

// renew extends holder's hold of key by d. It refuses when key's holder or
// token changed; a lapsed lease that nobody took since is still its
// holder's, as with client-go's leader election.
func (t *Table) renew(key, holder string, token uint64, d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.leases[key]
	if e == nil || e.holder != holder || e.token != token {
		return false
	}
	e.expires = time.Now().Add(d)
	return true
}

// release frees key if holder still holds it with token.
func (t *Table) release(key, holder string, token uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.leases[key]; e != nil && e.holder == holder && e.token == token {
		e.free()
	}
}

func (e *entry) free() {
	e.holder, e.pid, e.expires = "", 0, time.Time{}
	close(e.changed)
	e.changed = make(chan struct{})
}

// ReleasePID frees every lease that the process pid holds: the driver
// calls it when one of its processes exits.
func (t *Table) ReleasePID(pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.leases {
		if e.holder != "" && e.pid == pid {
			e.free()
		}
	}
}

// List is every lease the table has seen, sorted by name.
func (t *Table) List() []Holding {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	out := make([]Holding, 0, len(t.leases))
	for key, e := range t.leases {
		h := Holding{Lease: key, Token: t.tokens[key]}
		if e.holder != "" && now.Before(e.expires) {
			h.Holder, h.PID, h.Expires = e.holder, e.pid, e.expires
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Holding) int { return cmp.Compare(a.Lease, b.Lease) })
	return out
}

// The HTTP API that Client speaks:
//
//	POST /leases/{service}/{name}?holder=H&pid=P&duration=D&wait=W   acquire
//	POST /leases/{service}/{name}/renew?holder=H&token=T&duration=D
//	POST /leases/{service}/{name}/release?holder=H&token=T
//	GET  /leases                                                     List
//
// Acquire waits up to W for the lease and answers 200 with {"token": T},
// or 409 when W passed first; renew answers 200, or 409 when the lease is
// no longer the holder's.
type answer struct {
	Token uint64 `json:"token"`
}

// ServeHTTP serves the API above.
func (t *Table) ServeHTTP(w http.ResponseWriter, r *http.Request) { t.mux.ServeHTTP(w, r) }

func (t *Table) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /leases", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, t.List())
	})
	mux.HandleFunc("POST /leases/{service}/{name}", t.serveAcquire)
	mux.HandleFunc("POST /leases/{service}/{name}/renew", func(w http.ResponseWriter, r *http.Request) {
		q, err := params(r, "holder", "token", "duration")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !t.renew(key(r), q.holder, q.token, q.duration) {
			http.Error(w, "the lease is no longer this holder's", http.StatusConflict)
			return
		}
		writeJSON(w, http.StatusOK, answer{Token: q.token})
	})
	mux.HandleFunc("POST /leases/{service}/{name}/release", func(w http.ResponseWriter, r *http.Request) {
		q, err := params(r, "holder", "token")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		t.release(key(r), q.holder, q.token)
		w.WriteHeader(http.StatusNoContent)
	})
	t.mux = mux
}

func (t *Table) serveAcquire(w http.ResponseWriter, r *http.Request) {
	q, err := params(r, "holder", "pid", "duration", "wait")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), q.wait)
	defer cancel()
	token, err := t.acquire(ctx, key(r), q.holder, q.pid, q.duration)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, answer{Token: token})
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		http.Error(w, "held by another process", http.StatusConflict)
	case r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func key(r *http.Request) string { return r.PathValue("service") + "/" + r.PathValue("name") }

type query struct {
	holder   string
	pid      int
	token    uint64
	duration time.Duration
	wait     time.Duration
}

// params reads the named query parameters, each of which must be set.
func params(r *http.Request, names ...string) (query, error) {
	var q query
	v := r.URL.Query()
	for _, n := range names {
		s := v.Get(n)
		var err error
		switch n {
		case "holder":
			q.holder = s
			if s == "" {
				err = errors.New("empty")
			}
		case "pid":
			q.pid, err = strconv.Atoi(s)
		case "token":
			q.token, err = strconv.ParseUint(s, 10, 64)
		case "duration":
			q.duration, err = positive(s)
		case "wait":
			q.wait, err = positive(s)
		}
		if err != nil {
			return q, fmt.Errorf("query parameter %s=%q: %v", n, s, err)
		}
	}
	return q, nil
}

func positive(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = errors.New("must be > 0")
	}
	return d, err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
