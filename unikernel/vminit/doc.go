// Package vminit is the PID-1 init of a kiln microVM. A program built with
// the kiln_unikernel build tag calls Main from package sdk's init when it
// finds itself to be process 1, before main runs.
//
// Main mounts /proc, /sys and /dev, loads the kernel modules the image lists
// (the virtio drivers the stock kernel has as modules), configures lo and
// eth0 from the kernel command line, and then runs the program:
//
//   - with kiln.env=KILN_ROLE=...,... on the command line, one process in
//     that role;
//   - otherwise every process of the app's topology (read from
//     /etc/kiln/app.json), the entry points on 0.0.0.0 from kiln.port up and
//     the backends on 127.0.0.1, restarting any that exits.
//
// With kiln.ctl=PORT it serves POST /stop on that port: the entry points
// get SIGTERM and drain, then the backends, and the machine powers off, the
// same order in which the local target stops processes on Ctrl-C.
//
// Main never returns. When the program ends it prints the exit status on
// the console and powers the machine off.
package vminit

import "time"

// Kernel command line keys that Main reads.
const (
	ArgEnv   = "kiln.env"   // KEY=VALUE,KEY=VALUE added to the program's environment
	ArgIP    = "kiln.ip"    // eth0's address, CIDR: 10.0.2.15/24
	ArgGW    = "kiln.gw"    // the default route's gateway
	ArgPort  = "kiln.port"  // the first entry point's port
	ArgProbe = "kiln.probe" // print ProbeOK and power off at once
	ArgCtl   = "kiln.ctl"   // port of the control endpoint (POST /stop)
	// ArgDNS and ArgSearch write /etc/resolv.conf: name servers and search
	// domains, comma-separated. KubeVirt's masquerade binding would hand
	// them out over DHCP; kiln's init does not speak DHCP, so the renderer
	// passes the cluster's DNS on the command line instead.
	ArgDNS    = "kiln.dns"
	ArgSearch = "kiln.search"
)

// StopPath on the control port stops the program the way Ctrl-C stops the
// local target: entry points get SIGTERM first and drain, then the
// backends, each killed after Grace; then the machine powers off.
const (
	StopPath = "/stop"
	Grace    = 10 * time.Second
)

// Console lines the host watches for.
const (
	ProbeOK   = "kiln-init: probe ok"
	ReadyLine = "kiln-init: ready"
	FatalLine = "kiln-init: fatal:"
)
