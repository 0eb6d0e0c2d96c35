// Package kvstore is examples/kvstore written with //kiln: annotations: a
// durable key-value store split over three shards, each keeping its keys
// in its own storage.
package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kiln-dev/kiln/sdk"
)

// keys is the bucket that holds the shard's keys.
var keys = []byte("keys")

// New is one shard's share of the keys, served at /kv/{key}: a bbolt
// database in the shard's own storage directory (sdk.Self().Data), which
// commits, and syncs to disk, each PUT before answering it. kvstore is the
// service itself, through which a shard hands over the keys it no longer
// owns after the shard count changed.
//
//kiln:service kvstore shard shards=3 key=path:2 storage=1Gi
func New(kvstore *sdk.Conn) http.Handler {
	self := sdk.Self()
	if self.Role != "leaf" {
		// The driver, the router and health checks run this program
		// too; only shards hold keys.
		return http.NotFoundHandler()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	db, err := open(self)
	if err != nil {
		log.Error("cannot open the shard's store", "err", err)
		os.Exit(1)
	}
	s := &store{db: db, log: log}
	go s.handOver(context.Background(), self, kvstore)
	mux := http.NewServeMux()
	mux.Handle("/kv/{key}", s)
	return mux
}

// open opens the shard's database. A marker file names the instance its
// storage belongs to, so that one instance never serves another's keys.
func open(self sdk.Instance) (*bolt.DB, error) {
	if self.Data == "" {
		return nil, errors.New("no storage: the service declares none (spec.Storage)")
	}
	me := self.Service + "/shard-" + strconv.Itoa(self.Index)
	marker := filepath.Join(self.Data, "instance")
	switch b, err := os.ReadFile(marker); {
	case errors.Is(err, os.ErrNotExist):
		if err := os.WriteFile(marker, []byte(me+"\n"), 0o600); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case string(bytes.TrimSpace(b)) != me:
		return nil, fmt.Errorf("%s holds the storage of %s, not of %s", self.Data, bytes.TrimSpace(b), me)
	}
	// A second process on the same file waits for bbolt's lock, which a
	// killed one releases with its descriptors; give up rather than hang.
	return bolt.Open(filepath.Join(self.Data, "kv.db"), 0o600, &bolt.Options{Timeout: 10 * time.Second})
}

type store struct {
	db  *bolt.DB
	log *slog.Logger
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := []byte(r.PathValue("key"))
	switch r.Method {
	case http.MethodGet:
		var v []byte
		s.db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(keys); b != nil {
				v = bytes.Clone(b.Get(key))
			}
			return nil
		})
		if v == nil {
			http.Error(w, "no such key: "+string(key), http.StatusNotFound)
			return
		}
		w.Write(v)
	case http.MethodPut:
		v, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		// If-None-Match: * stores only a key the shard lacks: a hand-over
		// never overwrites a newer value written since the count changed.
		onlyNew := r.Header.Get("If-None-Match") == "*"
		exists := false
		err = s.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(keys)
			if err != nil {
				return err
			}
			if exists = b.Get(key) != nil; exists && onlyNew {
				return nil
			}
			return b.Put(key, v)
		})
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		case exists && onlyNew:
			w.WriteHeader(http.StatusPreconditionFailed)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	case http.MethodDelete:
		if err := s.db.Update(func(tx *bolt.Tx) error {
			if b := tx.Bucket(keys); b != nil {
				return b.Delete(key)
			}
			return nil
		}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// handOver sends each key this shard no longer owns (the shard count
// changed since it was written) to its new shard through the service, and
// then forgets it. It retries until every key has moved, since the new
// shard may still be starting.
func (s *store) handOver(ctx context.Context, self sdk.Instance, svc *sdk.Conn) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		moved, left, err := s.handOverOnce(ctx, self, svc)
		if moved > 0 {
			s.log.Info("handed keys over to their new shards", "moved", moved, "shards", self.Count)
		}
		if left == 0 {
			return
		}
		if wait >= time.Second { // the first tries may come before the service is reachable
			s.log.Warn("keys left to hand over", "left", left, "err", err, "retry in", wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (s *store) handOverOnce(ctx context.Context, self sdk.Instance, svc *sdk.Conn) (moved, left int, err error) {
	type kv struct{ k, v []byte }
	var foreign []kv
	s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(keys)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if !self.Owns(string(k)) {
				foreign = append(foreign, kv{bytes.Clone(k), bytes.Clone(v)})
			}
			return nil
		})
	})
	for _, e := range foreign {
		req, rerr := svc.NewRequest(ctx, http.MethodPut, "/kv/"+string(e.k), bytes.NewReader(e.v))
		if rerr != nil {
			return moved, len(foreign) - moved, rerr
		}
		req.Header.Set("If-None-Match", "*")
		resp, rerr := svc.Do(req)
		if rerr != nil {
			err = rerr
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusPreconditionFailed {
			err = fmt.Errorf("PUT /kv/%s: %s", e.k, resp.Status)
			continue
		}
		if derr := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(keys).Delete(e.k) }); derr != nil {
			err = derr
			continue
		}
		moved++
	}
	return moved, len(foreign) - moved, err
}
