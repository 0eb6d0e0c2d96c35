package vminit

import (
	"slices"
	"testing"
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
	if lookup(env, "KILN_ROLE") != "router" || lookup(env, "NOPE") != "" {
		t.Error("lookup")
	}
	if _, err := environment(map[string]string{ArgEnv: "novalue"}); err == nil {
		t.Error("kiln.env=novalue is accepted")
	}
}

func TestBootResolvConf(t *testing.T) {
	got, err := resolvConfText(parseCmdline("kiln.dns=10.96.0.10 kiln.search=apps.svc.cluster.local,svc.cluster.local,cluster.local"))
	want := "nameserver 10.96.0.10\nsearch apps.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
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
