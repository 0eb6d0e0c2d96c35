// Command nodetool serves the parts of the test cluster's real node that
// kiln builds itself (see hack/kube-node):
//
//	nodetool registry -addr 127.0.0.1:PORT -dir DIR   an OCI registry over plain HTTP, blobs in DIR
//	nodetool pause-image -o FILE -ref REF            a pause image holding this binary, as a tarball for ctr import
//	nodetool pause                                   hold a pod's namespaces until SIGTERM, reaping orphans
//	nodetool cri -socket PATH ps|rm-all              list, or stop and remove, every pod sandbox and container of a CRI
//	nodetool forward -listen ADDR -to ADDR           copy TCP connections from one address to another until SIGTERM
//
// Nothing here reaches beyond 127.0.0.1: the pause image replaces the one
// containerd would otherwise pull from a public registry.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("nodetool: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: nodetool registry|pause-image|pause|cri|forward [flags]")
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "registry":
		err = serveRegistry(args)
	case "pause-image":
		err = pauseImage(args)
	case "pause":
		err = pause()
	case "cri":
		err = cri(args)
	case "forward":
		err = forward(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func serveRegistry(args []string) error {
	fs := flag.NewFlagSet("registry", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "listen address")
	dir := fs.String("dir", "", "directory for blobs (required)")
	fs.Parse(args)
	if *dir == "" {
		return errors.New("registry: -dir is required")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// Manifests live in memory: the registry lives as long as the node.
	srv := &http.Server{Handler: registry.New(
		registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)),
		registry.WithReferrersSupport(true), // kiln attaches SBOMs as referrers
	), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	log.Printf("registry serving on %s, blobs in %s", ln.Addr(), *dir)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// pauseImage writes an image whose only file is this (static) binary,
// started as `pause`, under a non-root user as the upstream pause image.
func pauseImage(args []string) error {
	fs := flag.NewFlagSet("pause-image", flag.ExitOnError)
	out := fs.String("o", "", "output tarball (required)")
	ref := fs.String("ref", "kiln.local/pause:1", "the image's reference inside the tarball")
	fs.Parse(args)
	if *out == "" {
		return errors.New("pause-image: -o is required")
	}
	tag, err := name.NewTag(*ref)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	layer, err := tarLayer("pause", bin)
	if err != nil {
		return err
	}
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Config: v1.Config{
			Entrypoint: []string{"/pause", "pause"},
			User:       "65535:65535",
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return err
	}
	tmp := *out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Clean(*out))
}

// tarLayer is a layer holding one executable file at /NAME.
func tarLayer(name string, content []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	})
}

// pause holds the pod's namespaces. As PID 1 of a pod sharing its process
// namespace it also reaps orphans, as the upstream pause does.
func pause() error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return nil
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
	return nil
}

// cri lists (ps) or removes (rm-all) every pod sandbox and container of
// the CRI runtime at -socket. Stopping a sandbox through the CRI, rather
// than deleting containerd's tasks, also tears down its network (CNI DEL:
// veth, IP lease, port mappings) and unmounts its network namespace.
func cri(args []string) error {
	fs := flag.NewFlagSet("cri", flag.ExitOnError)
	socket := fs.String("socket", "", "the CRI's unix socket (required)")
	fs.Parse(args)
	if *socket == "" || fs.NArg() != 1 || (fs.Arg(0) != "ps" && fs.Arg(0) != "rm-all") {
		return errors.New("usage: nodetool cri -socket PATH ps|rm-all")
	}
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("listing pod sandboxes: %w", err)
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	if fs.Arg(0) == "ps" {
		for _, p := range pods.Items {
			fmt.Printf("sandbox %s %s/%s %s\n", p.Id, p.Metadata.Namespace, p.Metadata.Name, p.State)
		}
		for _, c := range ctrs.Containers {
			// The kubelet labels each container with its pod's namespace
			// and name.
			pod := c.Labels["io.kubernetes.pod.namespace"] + "/" + c.Labels["io.kubernetes.pod.name"]
			fmt.Printf("container %s %s %s %s\n", c.Id, pod, c.Metadata.Name, c.State)
		}
		return nil
	}
	var errs []error
	for _, p := range pods.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stopping sandbox %s: %w", p.Id, err))
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, fmt.Errorf("removing sandbox %s: %w", p.Id, err))
		}
	}
	// Removing a sandbox removes its containers; anything left is an orphan.
	if ctrs, err = rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, c := range ctrs.Containers {
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			errs = append(errs, fmt.Errorf("removing container %s: %w", c.Id, err))
		}
	}
	return errors.Join(errs...)
}

// forward copies each connection to -listen to a new one to -to: the pods
// reach the API server, which listens on 127.0.0.1 only, at the bridge's
// address, where the kubernetes Service's endpoint points.
func forward(args []string) error {
	fs := flag.NewFlagSet("forward", flag.ExitOnError)
	listen := fs.String("listen", "", "address to listen on (required)")
	to := fs.String("to", "", "address to connect to (required)")
	fs.Parse(args)
	if *listen == "" || *to == "" {
		return errors.New("usage: nodetool forward -listen ADDR -to ADDR")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	log.Printf("forwarding %s to %s", ln.Addr(), *to)
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			b, err := net.DialTimeout("tcp", *to, 5*time.Second)
			if err != nil {
				log.Printf("forward: %v", err)
				return
			}
			defer b.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(b, c)
				b.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, b)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}
