package vminit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// sysBlock is where the kernel lists its block devices.
const sysBlock = "/sys/block"

// diskNames reads kiln.disks: the instance each disk belongs to, in the
// order of their serial numbers.
func diskNames(args map[string]string) []string {
	if args[ArgDisks] == "" {
		return nil
	}
	return strings.Split(args[ArgDisks], ",")
}

// findDisks returns the device of each disk that names lists, by instance
// ("kvstore/shard-0" → "/dev/vdb"), reading the serial numbers under sys
// (/sys/block). A driver may still be probing its devices when its module
// has loaded, so it waits up to timeout for the last one.
func findDisks(sys string, names []string, timeout time.Duration) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	serials := map[string]string{} // serial → instance
	for i, n := range names {
		serials[DiskSerial(i)] = n
	}
	deadline := time.Now().Add(timeout)
	for {
		devs := map[string]string{}
		entries, _ := os.ReadDir(sys)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(sys, e.Name(), "serial"))
			if err != nil {
				continue
			}
			if n, ok := serials[strings.TrimSpace(string(b))]; ok {
				devs[n] = "/dev/" + e.Name()
			}
		}
		if len(devs) == len(names) {
			return devs, nil
		}
		if time.Now().After(deadline) {
			var lacking []string
			for i, n := range names {
				if devs[n] == "" {
					lacking = append(lacking, fmt.Sprintf("%s (serial %s)", n, DiskSerial(i)))
				}
			}
			return nil, fmt.Errorf("no block device for the disks of %s after %s: does the image load virtio_blk?", strings.Join(lacking, ", "), timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mountDisk mounts dev, the ext4 file system the host made, on dir, which
// it creates, and leaves dir to root alone, as the local target leaves an
// instance's directory to its user (the program runs as root in the
// guest).
func mountDisk(dev, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(dev, dir, "ext4", unix.MS_NOATIME|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("mount %s on %s: %w (no ext4 file system there, or one with features this kernel lacks)", dev, dir, err)
		}
		return fmt.Errorf("mount %s on %s: %w", dev, dir, err)
	}
	return os.Chmod(dir, 0o700)
}
