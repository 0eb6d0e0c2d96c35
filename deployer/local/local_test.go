package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
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

// TestAKilledProcessIsRestartingThenReadyAgain kills a shard of kv and
// watches its state, its restart count and the deployer's notes in its
// output.
func TestAKilledProcessIsRestartingThenReadyAgain(t *testing.T) {
	bin, err := testbin.Build(t.TempDir(), "./examples/kv")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(context.Background(), kvTopology(t, 2), Options{Binary: bin, Output: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	shard := func() Process {
		for _, p := range d.Processes() {
			if p.Name == "kv/shard-1" {
				return p
			}
		}
		t.Fatalf("no kv/shard-1 in %v", d.Processes())
		return Process{}
	}
	for _, p := range d.Processes() {
		if p.State != Ready || p.Restarts != 0 || p.Exit != "" {
			t.Fatalf("after Start, %s is %s (%d restarts, exit %q), want ready, 0, none", p.Name, p.State, p.Restarts, p.Exit)
		}
	}
	before := shard()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	seen := map[State]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for p := shard(); !(p.State == Ready && p.Restarts == 1); p = shard() {
		seen[p.State] = true
		if time.Now().After(deadline) {
			t.Fatalf("10s after SIGKILL, shard-1 is %+v; want ready after 1 restart", p)
		}
		time.Sleep(5 * time.Millisecond)
	}
	after := shard()
	if !seen[Restarting] || after.Exit != "signal: killed" || after.PID == before.PID || !after.Since.After(before.Since) {
		t.Fatalf("shard-1 went through %v to %+v; want restarting, then ready with a new pid, exit %q", seen, after, "signal: killed")
	}
	var notes []string
	for _, l := range d.Output("kv/shard-1") {
		if l.Note {
			notes = append(notes, l.Text)
		}
	}
	if len(notes) != 2 || !strings.HasPrefix(notes[0], "kiln: signal: killed; restarting in ") || notes[1] != "kiln: ready again" {
		t.Fatalf("Output(kv/shard-1) notes = %q, want the exit and the return", notes)
	}
	if got := d.Output("kv/shard-9"); got != nil {
		t.Fatalf("Output(kv/shard-9) = %v, want nil", got)
	}
	d.Stop()
	for _, p := range d.Processes() {
		if p.State != Stopped {
			t.Fatalf("after Stop, %s is %s, want stopped", p.Name, p.State)
		}
	}
}

func TestTailKeepsTheLastLinesAndQuotesTheLastOutput(t *testing.T) {
	var tw tailWriter
	for i := range tailLines + 5 {
		fmt.Fprintf(&tw, "line %d\n", i)
	}
	tw.note("kiln: a note")
	fmt.Fprintf(&tw, "partial")
	lines := tw.Lines()
	if len(lines) != tailLines || lines[0].Text != "line 6" || !lines[len(lines)-1].Note {
		t.Fatalf("Lines() = %d lines from %q to %+v, want %d from line 6 to the note", len(lines), lines[0].Text, lines[len(lines)-1], tailLines)
	}
	got := strings.Split(tw.String(), "\n")
	if len(got) != errorLines || got[len(got)-1] != "  line 204" || got[0] != "  line 185" {
		t.Fatalf("String() = %q, want the last %d lines of output, no note", got, errorLines)
	}
}

// A process runs with the GODEBUG the deployment inherits; a router also
// with the runtime setting kiln gives routers, unless the inherited value
// sets that key itself (someone tracing the scheduler on purpose).
func TestARouterAddsItsGODEBUGToTheInheritedOne(t *testing.T) {
	bin, err := testbin.Build(t.TempDir(), "./examples/hello")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ inherited, router string }{
		{"http2client=0", "schedtrace=2147483647,http2client=0"},
		{"schedtrace=1000,http2client=0", "schedtrace=1000,http2client=0"},
	} {
		env := append(os.Environ(), "GODEBUG="+tc.inherited)
		d, err := Start(context.Background(), topology(t), Options{Binary: bin, Output: io.Discard, Env: env})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range d.Processes() {
			environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID))
			if err != nil {
				d.Stop()
				t.Skipf("no /proc: %v", err)
			}
			var got []string
			for kv := range strings.SplitSeq(string(environ), "\x00") {
				if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
					got = append(got, v)
				}
			}
			want := tc.inherited
			if p.Workload == "hello-router" {
				want = tc.router
			}
			if len(got) != 1 || got[0] != want {
				t.Errorf("inheriting %q, %s runs with GODEBUG %q, want one, %q", tc.inherited, p.Name, got, want)
			}
		}
		d.Stop()
	}
}
