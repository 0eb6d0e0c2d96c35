package unikernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
)

// Under software emulation a bzImage spends a good part of its boot on
// itself: real-mode setup, then decompressing some 50 MB of kernel with the
// emulated CPU. QEMU's microvm machine also boots an uncompressed ELF
// vmlinux through its PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), which
// skips both. Build extracts that vmlinux from the bzImage once, on the
// host, and the microvm runner boots it; the pc machine and KubeVirt keep
// the bzImage.

// xenNotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the kernel has a PVH entry.
const xenNotePhys32Entry = 18

// ExtractPVH returns the uncompressed vmlinux inside a bzImage when it has a
// PVH entry point, and nil when the bzImage holds none that kiln can
// decompress (LZ4, as Debian's kernels, or gzip) or no PVH entry.
func ExtractPVH(bz []byte) []byte {
	for _, c := range []struct {
		magic  []byte
		decode func([]byte) ([]byte, error)
	}{
		{[]byte{0x02, 0x21, 0x4c, 0x18}, unlz4Legacy},
		{[]byte{0x1f, 0x8b, 0x08, 0x00}, gunzip},
	} {
		for off := 0; ; {
			i := bytes.Index(bz[off:], c.magic)
			if i < 0 {
				break
			}
			off += i
			if out, err := c.decode(bz[off:]); err == nil && hasPVH(out) {
				return out
			}
			off++
		}
	}
	return nil
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	return io.ReadAll(zr)
}

// hasPVH says whether b is an x86-64 ELF with a PVH entry note.
func hasPVH(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil || f.Machine != elf.EM_X86_64 {
		return false
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		n := make([]byte, p.Filesz)
		if _, err := p.ReadAt(n, 0); err != nil {
			continue
		}
		for len(n) >= 12 {
			nsz, dsz, typ := binary.LittleEndian.Uint32(n), binary.LittleEndian.Uint32(n[4:]), binary.LittleEndian.Uint32(n[8:])
			name := n[12:min(len(n), 12+int(nsz))]
			if bytes.HasPrefix(name, []byte("Xen")) && typ == xenNotePhys32Entry {
				return true
			}
			adv := 12 + int(align4(nsz)) + int(align4(dsz))
			if adv > len(n) {
				break
			}
			n = n[adv:]
		}
	}
	return false
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

// unlz4Legacy decodes LZ4's legacy frame format (what the kernel's
// "lz4 -l" payload is): a magic number, then blocks each prefixed with
// their compressed size. The kernel appends its uncompressed size after the
// last block; decoding stops at anything that is not a whole block.
func unlz4Legacy(b []byte) ([]byte, error) {
	const magic = 0x184c2102
	if len(b) < 4 || binary.LittleEndian.Uint32(b) != magic {
		return nil, errors.New("lz4: not a legacy frame")
	}
	b = b[4:]
	var out []byte
	for len(b) >= 4 {
		n := binary.LittleEndian.Uint32(b)
		if n == magic {
			b = b[4:]
			continue
		}
		if int64(n) > int64(len(b)-4) || n == 0 {
			break
		}
		var err error
		if out, err = lz4Block(out, b[4:4+n]); err != nil {
			return nil, err
		}
		b = b[4+n:]
	}
	if len(out) == 0 {
		return nil, errors.New("lz4: no block")
	}
	return out, nil
}

// lz4Block appends the decoding of one LZ4 block to out.
func lz4Block(out, in []byte) ([]byte, error) {
	bad := errors.New("lz4: corrupt block")
	start := len(out)
	for i := 0; i < len(in); {
		tok := in[i]
		i++
		lit := int(tok >> 4)
		if lit == 15 {
			for {
				if i >= len(in) {
					return nil, bad
				}
				c := in[i]
				i++
				lit += int(c)
				if c != 255 {
					break
				}
			}
		}
		if i+lit > len(in) {
			return nil, bad
		}
		out = append(out, in[i:i+lit]...)
		i += lit
		if i == len(in) {
			break // the last sequence has literals only
		}
		if i+2 > len(in) {
			return nil, bad
		}
		off := int(in[i]) | int(in[i+1])<<8
		i += 2
		ml := int(tok & 15)
		if ml == 15 {
			for {
				if i >= len(in) {
					return nil, bad
				}
				c := in[i]
				i++
				ml += int(c)
				if c != 255 {
					break
				}
			}
		}
		ml += 4
		if off == 0 || off > len(out)-start {
			return nil, bad
		}
		p := len(out) - off
		for k := 0; k < ml; k++ {
			out = append(out, out[p+k])
		}
	}
	return out, nil
}
