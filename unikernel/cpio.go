package unikernel

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
)

// File modes of cpio entries (the st_mode type bits).
const (
	modeDir  = 0o040000
	modeReg  = 0o100000
	modeChar = 0o020000
	modeLink = 0o120000
)

// CPIOEntry is one file of an initramfs.
type CPIOEntry struct {
	Path  string // relative, slash-separated, no leading slash: "lib/modules"
	Mode  uint32 // type and permission bits, e.g. modeReg|0o755
	Data  []byte // contents of a regular file, or a symlink's target
	Major uint32 // device numbers of a character device
	Minor uint32
}

// Archive is an initramfs under construction. Writing it is deterministic:
// entries are sorted by path and every timestamp, owner and inode number is
// fixed, so the same entries always give the same bytes.
type Archive struct {
	entries map[string]CPIOEntry
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]CPIOEntry{}} }

// Dir adds a directory and its parents.
func (a *Archive) Dir(p string, perm uint32) {
	p = clean(p)
	for _, parent := range parents(p) {
		if _, ok := a.entries[parent]; !ok {
			a.entries[parent] = CPIOEntry{Path: parent, Mode: modeDir | 0o755}
		}
	}
	a.entries[p] = CPIOEntry{Path: p, Mode: modeDir | perm&0o7777}
}

// File adds a regular file and its parent directories.
func (a *Archive) File(p string, perm uint32, data []byte) {
	a.add(CPIOEntry{Path: p, Mode: modeReg | perm&0o7777, Data: data})
}

// Symlink adds a symbolic link to target.
func (a *Archive) Symlink(p, target string) {
	a.add(CPIOEntry{Path: p, Mode: modeLink | 0o777, Data: []byte(target)})
}

// CharDev adds a character device node, such as dev/console (5, 1).
func (a *Archive) CharDev(p string, perm, major, minor uint32) {
	a.add(CPIOEntry{Path: p, Mode: modeChar | perm&0o7777, Major: major, Minor: minor})
}

func (a *Archive) add(e CPIOEntry) {
	e.Path = clean(e.Path)
	for _, parent := range parents(e.Path) {
		if _, ok := a.entries[parent]; !ok {
			a.entries[parent] = CPIOEntry{Path: parent, Mode: modeDir | 0o755}
		}
	}
	a.entries[e.Path] = e
}

// Paths lists the archive's paths in the order they are written.
func (a *Archive) Paths() []string {
	ps := make([]string, 0, len(a.entries))
	for p := range a.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// WriteTo writes the archive in the "newc" cpio format the Linux kernel
// unpacks as an initramfs: entries sorted by path (a directory always comes
// before what it holds), inode numbers counting from 1, every mtime, uid and
// gid 0, ended by the TRAILER!!! entry.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: bufio.NewWriter(w)}
	for i, p := range a.Paths() {
		if err := writeEntry(cw, uint32(i+1), a.entries[p]); err != nil {
			return cw.n, err
		}
	}
	if err := writeEntry(cw, 0, CPIOEntry{Path: "TRAILER!!!"}); err != nil {
		return cw.n, err
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

func writeEntry(w io.Writer, ino uint32, e CPIOEntry) error {
	nlink := uint32(1)
	if e.Mode&0o170000 == modeDir {
		nlink = 2
	}
	if e.Path == "TRAILER!!!" {
		nlink = 1
	}
	name := e.Path + "\x00"
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.Major, e.Minor, len(name), 0)
	if _, err := io.WriteString(w, hdr+name+pad(len(hdr)+len(name))); err != nil {
		return err
	}
	if _, err := w.Write(e.Data); err != nil {
		return err
	}
	_, err := io.WriteString(w, pad(len(e.Data)))
	return err
}

// pad is the NUL padding that brings n up to a multiple of 4.
func pad(n int) string { return strings.Repeat("\x00", (4-n%4)%4) }

func clean(p string) string { return strings.Trim(p, "/") }

// parents lists the directories above p, outermost first.
func parents(p string) []string {
	var out []string
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	return out
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// ReadArchive lists the entries of a newc archive; it is what tests use to
// check what an image holds.
func ReadArchive(r io.Reader) ([]CPIOEntry, error) {
	br := bufio.NewReader(r)
	var out []CPIOEntry
	var off int64
	for {
		hdr := make([]byte, 110)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, fmt.Errorf("cpio header at %d: %w", off, err)
		}
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("cpio header at %d: magic %q is not newc 070701", off, hdr[:6])
		}
		field := func(i int) uint32 {
			var v uint32
			fmt.Sscanf(string(hdr[6+8*i:14+8*i]), "%08X", &v)
			return v
		}
		mode, size, rmaj, rmin, nsize := field(1), field(6), field(9), field(10), field(11)
		nameBuf := make([]byte, int(nsize)+len(pad(110+int(nsize))))
		if _, err := io.ReadFull(br, nameBuf); err != nil {
			return nil, err
		}
		name := strings.TrimRight(string(nameBuf[:nsize]), "\x00")
		data := make([]byte, int(size)+len(pad(int(size))))
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, err
		}
		off += 110 + int64(len(nameBuf)+len(data))
		if name == "TRAILER!!!" {
			return out, nil
		}
		out = append(out, CPIOEntry{Path: name, Mode: mode, Data: data[:size], Major: rmaj, Minor: rmin})
	}
}
