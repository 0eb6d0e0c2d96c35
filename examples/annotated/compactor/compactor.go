// Package compactor is examples/compactor written with //kiln: annotations:
// there is no main, and kiln run ./examples/annotated/compactor elects the
// same way.
package compactor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/sdk"
)

// Environment variables the compactor reads.
const (
	// EnvDir is the store every replica shares; unset, it is
	// kiln-compactor in the system's temporary directory.
	EnvDir = "COMPACTOR_DIR"
	// EnvEvery is how often the leader compacts, as a Go duration;
	// unset, every 5s.
	EnvEvery = "COMPACTOR_EVERY"
)

// Pass is what the leader records each time it compacts.
type Pass struct {
	Token uint64    `json:"token"` // the leader's fencing token
	PID   int       `json:"pid"`
	Pass  int       `json:"pass"` // its passes under this token, from 1
	At    time.Time `json:"at"`
}

// ErrFenced is a write refused because a newer leader has written.
var ErrFenced = errors.New("a newer leader has written: this one was deposed")

// Store is a directory that keeps the last Pass and refuses one whose
// token is smaller than the last it accepted: the fencing that keeps a
// deposed leader (paused, say, past its lease) from undoing a newer one's
// work.
type Store struct{ Dir string }

// NewStore is the store EnvDir names.
func NewStore() Store {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "kiln-compactor")
	}
	return Store{Dir: dir}
}

// Last is the last Pass written; the zero Pass when there is none.
func (s Store) Last() (Pass, error) {
	var p Pass
	b, err := os.ReadFile(filepath.Join(s.Dir, "last.json"))
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	return p, json.Unmarshal(b, &p)
}

// Write records p, unless a Pass with a larger token was written before.
// A lock file makes the check and the write one step among processes.
func (s Store) Write(p Pass) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(s.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	last, err := s.Last()
	if err != nil {
		return err
	}
	if p.Token < last.Token {
		return fmt.Errorf("token %d < %d: %w", p.Token, last.Token, ErrFenced)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, "last.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.Dir, "last.json"))
}

// Compact is the leader's periodic work: while this replica leads, it
// compacts every EnvEvery and records the pass with its fencing token.
// Only one replica at a time runs it; when another one becomes leader,
// this one's context ends. The //kiln:service on New names it.
func Compact(ctx context.Context, token uint64) error {
	every := 5 * time.Second
	if s := os.Getenv(EnvEvery); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s=%q: want a duration like 5s", EnvEvery, s)
		}
		every = d
	}
	store := NewStore()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	tick := time.NewTicker(every)
	defer tick.Stop()
	for pass := 1; ; pass++ {
		p := Pass{Token: token, PID: os.Getpid(), Pass: pass, At: time.Now().UTC()}
		if err := store.Write(p); err != nil {
			return err
		}
		log.Info("compacted", "token", token, "pass", pass, "pid", p.PID)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// New answers GET / with the last pass: which replica compacted last, and
// under which token. Its replicas take the lease "compactor" (held 5s
// without renewal) and run Compact while they hold it.
//
//kiln:service compactor simple replicas=3 lease=compactor lease-duration=5s lead=Compact
func New() http.Handler {
	store := NewStore()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last, err := store.Last()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(struct {
			Last   Pass         `json:"last"`
			Answer sdk.Instance `json:"answered_by"`
		}{last, sdk.Self()})
	})
}
