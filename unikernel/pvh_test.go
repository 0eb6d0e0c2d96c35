package unikernel

import (
	"bytes"
	"os"
	"testing"
)

func TestBootPVHDecoder(t *testing.T) {
	// One block: 4 literals "abcd", then a match of 8 at offset 4
	// (overlapping: "abcdabcd"), then the literals "xyz" that end it.
	block := []byte{0x44, 'a', 'b', 'c', 'd', 4, 0, 0x30, 'x', 'y', 'z'}
	out, err := lz4Block(nil, block)
	if err != nil || string(out) != "abcdabcdabcdxyz" {
		t.Fatalf("lz4Block: %q, %v", out, err)
	}
	if _, err := lz4Block(nil, []byte{0x44, 'a', 'b', 'c', 'd', 9, 0, 0x30, 'x', 'y', 'z'}); err == nil {
		t.Error("an offset before the block's start decodes")
	}
	if ExtractPVH([]byte("no kernel here")) != nil {
		t.Error("ExtractPVH finds a kernel in junk")
	}
}

// TestBootPVHKernel extracts the PVH vmlinux from the Debian kernel.
func TestBootPVHKernel(t *testing.T) {
	requireKernel(t)
	k, err := FindKernel("", "")
	if err != nil {
		t.Fatal(err)
	}
	bz, err := os.ReadFile(k.Image)
	if err != nil {
		t.Fatal(err)
	}
	elf := ExtractPVH(bz)
	if elf == nil || !bytes.HasPrefix(elf, []byte("\x7fELF")) || !hasPVH(elf) {
		t.Fatalf("no PVH vmlinux in %s", k.Image)
	}
}
