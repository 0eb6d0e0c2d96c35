package vminit

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/child"
)

func TestParseCmdline(t *testing.T) {
	args := parseCmdline(`console=ttyS0 quiet kiln.ip=10.0.2.15/24 kiln.env=KILN_ROLE=leaf,KILN_INDEX=2 kiln.env="A=b c" virtio_mmio.device=4K@0xfeb00000:12` + "\n")
	want := map[string]string{
		"console":            "ttyS0",
		"quiet":              "",
		"kiln.ip":            "10.0.2.15/24",
		"kiln.env":           "KILN_ROLE=leaf,KILN_INDEX=2,A=b c",
		"virtio_mmio.device": "4K@0xfeb00000:12",
	}
	if len(args) != len(want) {
		t.Errorf("got %q, want %q", args, want)
	}
	for k, v := range want {
		if args[k] != v {
			t.Errorf("%s = %q, want %q", k, args[k], v)
		}
	}
}

func TestEnvironment(t *testing.T) {
	env, err := environment(map[string]string{ArgEnv: "KILN_ROLE=router,KILN_PEERS=http://a:1,http://b:2,KILN_SERVICE=kv"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"PATH=/", "HOME=/", "KILN_ROLE=router", "KILN_PEERS=http://a:1,http://b:2", "KILN_SERVICE=kv"}
	if !slices.Equal(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}
	if child.Getenv(env, "KILN_ROLE") != "router" || child.Getenv(env, "NOPE") != "" {
		t.Error("lookup")
	}
	if _, err := environment(map[string]string{ArgEnv: "novalue"}); err == nil {
		t.Error("kiln.env=novalue is accepted")
	}
}

func TestBootResolvConf(t *testing.T) {
	got, err := resolvConfText(parseCmdline("kiln.dns=10.96.0.10 kiln.search=apps.svc.cluster.local,svc.cluster.local,cluster.local"))
	want := "nameserver 10.96.0.10\nsearch apps.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:3\n"
	if err != nil || got != want {
		t.Errorf("resolv.conf %q, %v; want %q", got, err, want)
	}
	if got, err := resolvConfText(parseCmdline("quiet")); got != "" || err != nil {
		t.Errorf("without kiln.dns: %q, %v", got, err)
	}
	if _, err := resolvConfText(parseCmdline("kiln.dns=cluster-dns")); err == nil {
		t.Error("kiln.dns=cluster-dns is accepted")
	}
}

func TestEachDiskIsFoundByItsSerialWhateverItsDeviceName(t *testing.T) {
	sys := t.TempDir()
	for dev, serial := range map[string]string{"vda": "kiln-disk-1\n", "vdb": "kiln-disk-0", "vdc": "someone-else"} {
		os.MkdirAll(filepath.Join(sys, dev), 0o755)
		os.WriteFile(filepath.Join(sys, dev, "serial"), []byte(serial), 0o644)
	}
	os.MkdirAll(filepath.Join(sys, "loop0"), 0o755) // no serial at all
	names := diskNames(parseCmdline("quiet " + ArgDisks + "=kv/shard-0,kv/shard-1"))
	got, err := findDisks(sys, names, time.Second)
	want := map[string]string{"kv/shard-0": "/dev/vdb", "kv/shard-1": "/dev/vda"}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("findDisks(%q) = %v, %v; want %v", names, got, err, want)
	}
	_, err = findDisks(sys, append(names, "kv/shard-2"), 50*time.Millisecond)
	if want := "no block device for the disks of kv/shard-2 (serial kiln-disk-2)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("findDisks of a disk that is missing = %v, want %q", err, want)
	}
	if got, err := findDisks(sys, diskNames(parseCmdline("quiet")), time.Hour); got != nil || err != nil {
		t.Errorf("findDisks without %s = %v, %v; want nothing, at once", ArgDisks, got, err)
	}
}
