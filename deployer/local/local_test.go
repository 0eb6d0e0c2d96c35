package local

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

func topology(t *testing.T) *patterns.Topology {
	t.Helper()
	app := &spec.App{Services: []spec.Service{{Name: "hello", Simple: &spec.Simple{Replicas: 2}}}}
	app.SetDefaults()
	topo, err := patterns.Build(app)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestStartErrorsNameTheCause(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	crasher := filepath.Join(t.TempDir(), "crasher")
	if err := os.WriteFile(crasher, []byte("#!/bin/sh\necho 'panic: no config file' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sleeper := filepath.Join(t.TempDir(), "sleeper")
	if err := os.WriteFile(sleeper, []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts Options
		want []string
	}{
		{"entry port in use", Options{Binary: crasher, Port: busy.Addr().(*net.TCPAddr).Port},
			[]string{"entry port", "address already in use", "--port or KILN_PORT"}},
		{"process keeps crashing", Options{Binary: crasher},
			[]string{"keeps exiting", "panic: no config file"}},
		{"process never ready", Options{Binary: sleeper, ReadyTimeout: 300 * time.Millisecond},
			[]string{"did not answer /readyz within 300ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Output = io.Discard
			start := time.Now()
			d, err := Start(context.Background(), topology(t), tc.opts)
			if err == nil {
				d.Stop()
				t.Fatal("Start succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("Start took %s to give up", took)
			}
		})
	}
}
