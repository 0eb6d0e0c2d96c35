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
// A shard or leaf that keeps storage (spec.Storage) gets a virtio block
// device of its own, which the host attached and formatted: kiln.disks
// names the instance of each device, and the init mounts each one at
// MountPoint (Storage.Path/SERVICE/INSTANCE, /data/kv/shard-2 by default)
// and gives that directory to its instance alone as KILN_DATA. The
// instances share one root file system, so none of them is given
// Storage.Path itself.
//
// With kiln.ctl=PORT it serves POST /stop on that port: the entry points
// get SIGTERM and drain, then the backends, the disks are unmounted, and
// the machine powers off, the same order in which the local target stops
// processes on Ctrl-C.
//
// Main never returns. When the program ends it prints the exit status on
// the console and powers the machine off.
package vminit

import (
	"path"
	"strconv"
	"time"
)

// Kernel command line keys that Main reads.
const (
	ArgEnv   = "kiln.env"   // KEY=VALUE,KEY=VALUE added to the program's environment (EncodeEnv)
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
	// ArgDisks names the instance each disk belongs to, as
	// SERVICE/INSTANCE,...: the i-th is the block device whose serial
	// number is DiskSerial(i).
	ArgDisks = "kiln.disks"
)

// DiskSerial is the serial number of disk i of kiln.disks. The init finds
// a disk by it rather than by its name (vda, vdb, ...), which follows the
// order in which the kernel happens to probe the devices.
func DiskSerial(i int) string { return "kiln-disk-" + strconv.Itoa(i) }

// MountPoint is where instance (such as "shard-2") of service finds its
// disk in the guest, under its storage's path: its KILN_DATA.
func MountPoint(storagePath, service, instance string) string {
	return path.Join(storagePath, service, instance)
}

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
