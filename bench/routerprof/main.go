// Command routerprof is a temporary profiling harness: the kv shard router
// with a CPU profile written on SIGTERM.
package main

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	svc := &spec.Service{Name: "kv", Shard: &spec.Shard{Shards: 3, Key: spec.Key{PathSegment: 2}}}
	var peers []*url.URL
	for _, p := range strings.Split(os.Getenv("KILN_PEERS"), ",") {
		u, _ := url.Parse(p)
		peers = append(peers, u)
	}
	h, err := patterns.NewRouter(svc, peers, patterns.Options{})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", os.Getenv("KILN_ADDR"))
	if err != nil {
		panic(err)
	}
	f, _ := os.Create(os.Getenv("PROF"))
	pprof.StartCPUProfile(f)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	patterns.Serve(ctx, ln, h, 1)
	pprof.StopCPUProfile()
	f.Close()
}
