package builder

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// Compression says how layers are stored.
type Compression string

const (
	// Uncompressed stores layers as plain tar: nothing to compress on a
	// rebuild, and Docker keeps layers uncompressed anyway. For local
	// outputs.
	Uncompressed Compression = "none"
	// Gzip compresses layers, for registries.
	Gzip Compression = "gzip"
)

// binaryLayer is a one-file layer: the binary at /name, owned by root,
// mode 0755, with a fixed modification time so that the bytes depend on
// the binary alone. It is streamed from the binary's file.
type binaryLayer struct {
	path   string
	header []byte // the tar header
	size   int64  // of the binary
	digest v1.Hash
}

func tarHeader(name string, size int64, mtime time.Time) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: size, ModTime: mtime, Format: tar.FormatPAX})
	tw.Flush()
	return buf.Bytes()
}

// tail is what follows the file in the tar: padding to a block, and the
// two zero blocks that end the archive.
func (l *binaryLayer) tail() int64 { return (512-l.size%512)%512 + 1024 }

func (l *binaryLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *binaryLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *binaryLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
func (l *binaryLayer) Size() (int64, error)                { return int64(len(l.header)) + l.size + l.tail(), nil }
func (l *binaryLayer) Compressed() (io.ReadCloser, error)  { return l.Uncompressed() }
func (l *binaryLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	return &layerStream{f: f, r: io.MultiReader(bytes.NewReader(l.header), io.LimitReader(f, l.size), io.LimitReader(zeros{}, l.tail()))}, nil
}

// layerStream reads a binaryLayer. Copied to a file, as into an OCI
// layout, the binary goes file to file in the kernel (copy_file_range).
type layerStream struct {
	f *os.File
	r io.Reader
}

func (s *layerStream) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *layerStream) Close() error               { return s.f.Close() }

// WriteTo goes on from where Read left off (net/http reads a body up to
// its ContentLength, then copies the rest to check there is none). The
// multi-reader hands each part to w's ReadFrom, which is where a file
// takes the binary with copy_file_range.
func (s *layerStream) WriteTo(w io.Writer) (int64, error) { return io.Copy(w, s.r) }

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// binaryDigests are what a binary's layer costs a read of the whole file
// to learn; they are cached by the binary's Go build ID.
type binaryDigests struct {
	SHA256 string  // of the binary
	Layer  v1.Hash // of its layer
}

// loadBinary reads what kiln needs of a compiled binary: its build
// information, its digest and its layer (named after the program, dated
// mtime). An unchanged binary is not read again: the digests are cached
// under its Go build ID, a hash of its content.
func loadBinary(path, cacheDir string, mtime time.Time) (Binary, *binaryLayer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Binary{}, nil, err
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return Binary{}, nil, fmt.Errorf("reading the build information of %s: %w", path, err)
	}
	b := Binary{Path: path, Size: fi.Size(), Info: info}
	l := &binaryLayer{path: path, header: tarHeader(programName(info.Path), fi.Size(), mtime), size: fi.Size()}
	record := ""
	if id := goBuildID(path); id != "" && cacheDir != "" {
		record = filepath.Join(cacheDir, "binaries", cacheKey(id, strconv.FormatInt(fi.Size(), 10), fi.ModTime().String(), string(l.header)))
		var d binaryDigests
		if j, err := os.ReadFile(record); err == nil && json.Unmarshal(j, &d) == nil {
			b.SHA256, l.digest = d.SHA256, d.Layer
			return b, l, nil
		}
	}
	// Two hashes of 10 MB: in parallel.
	var wg sync.WaitGroup
	var errb, errl error
	var sumb, suml []byte
	wg.Go(func() { sumb, errb = hashFile(path, nil, l.size, 0) })
	wg.Go(func() { suml, errl = hashFile(path, l.header, l.size, l.tail()) })
	wg.Wait()
	if err := errors.Join(errb, errl); err != nil {
		return Binary{}, nil, err
	}
	b.SHA256 = hex.EncodeToString(sumb)
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(suml)}
	if record != "" {
		j, _ := json.Marshal(binaryDigests{SHA256: b.SHA256, Layer: l.digest})
		os.MkdirAll(filepath.Dir(record), 0o755)
		os.WriteFile(record, j, 0o644)
	}
	return b, l, nil
}

// hashFile is the SHA-256 of prefix, the first size bytes of the file, and
// zeros more zero bytes.
func hashFile(path string, prefix []byte, size, zeroes int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	h.Write(prefix)
	if _, err := io.Copy(h, io.LimitReader(f, size)); err != nil {
		return nil, err
	}
	io.Copy(h, io.LimitReader(zeros{}, zeroes))
	return h.Sum(nil), nil
}

// goBuildID is the Go build ID in an ELF binary's note, or "".
func goBuildID(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := f.Section(".note.go.buildid")
	if s == nil {
		return ""
	}
	note, err := s.Data()
	// namesz, descsz, type, "Go\x00\x00", then the ID.
	if err != nil || len(note) < 16 || string(note[12:16]) != "Go\x00\x00" {
		return ""
	}
	n := binary.LittleEndian.Uint32(note[4:8])
	if f.ByteOrder == binary.BigEndian {
		n = binary.BigEndian.Uint32(note[4:8])
	}
	if int(n) > len(note)-16 {
		return ""
	}
	return string(note[16 : 16+n])
}

// rawLayer is a layer kept as uncompressed tar in memory. Its blob is the
// tar itself, so its digest is its diff ID.
type rawLayer struct {
	tar    []byte
	digest v1.Hash
	mt     types.MediaType
}

func newRawLayer(tarball []byte, mt types.MediaType) *rawLayer {
	sum := sha256.Sum256(tarball)
	return &rawLayer{tar: tarball, digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, mt: mt}
}

func (l *rawLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *rawLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *rawLayer) Size() (int64, error)                { return int64(len(l.tar)), nil }
func (l *rawLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *rawLayer) Compressed() (io.ReadCloser, error)  { return l.Uncompressed() }
func (l *rawLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.tar)), nil
}

// gzipLayer is a gzip-compressed layer whose blob lives in a file, so that
// a layer is compressed once per content and cache directory.
type gzipLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	mt             types.MediaType
}

func (l *gzipLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *gzipLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *gzipLayer) Size() (int64, error)                { return l.size, nil }
func (l *gzipLayer) MediaType() (types.MediaType, error) { return l.mt, nil }
func (l *gzipLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *gzipLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// encode stores l the way c says, with OCI media types. Gzip blobs are
// cached in dir by diff ID.
func encode(l v1.Layer, c Compression, dir string) (v1.Layer, error) {
	diffID, err := l.DiffID()
	if err != nil {
		return nil, err
	}
	if c != Gzip {
		switch l.(type) {
		case *rawLayer, *binaryLayer:
			return l, nil
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return nil, fmt.Errorf("reading layer %s: %w", diffID, err)
		}
		return newRawLayer(b, types.OCIUncompressedLayer), nil
	}
	path := filepath.Join(dir, "gzip", diffID.Hex)
	if digest, size, err := readGzipMeta(path); err == nil {
		return &gzipLayer{path: path, digest: digest, diffID: diffID, size: size, mt: types.OCILayer}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), diffID.Hex+".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	zw, _ := gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	if _, err := io.Copy(zw, rc); err != nil {
		return nil, fmt.Errorf("compressing layer %s: %w", diffID, err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	// The digest goes beside the blob, so a cache hit costs no hashing.
	if err := os.WriteFile(path+".digest", []byte(digest.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	return &gzipLayer{path: path, digest: digest, diffID: diffID, size: cw.n, mt: types.OCILayer}, nil
}

func readGzipMeta(path string) (v1.Hash, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	b, err := os.ReadFile(path + ".digest")
	if err != nil {
		return v1.Hash{}, 0, err
	}
	h, err := v1.NewHash(string(b))
	return h, fi.Size(), err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ociType maps Docker layer media types to their OCI equivalents, so that
// an image built on a Docker-typed base is all OCI.
type ociTyped struct{ v1.Layer }

func (l ociTyped) MediaType() (types.MediaType, error) {
	mt, err := l.Layer.MediaType()
	switch mt {
	case types.DockerLayer:
		return types.OCILayer, err
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer, err
	case types.DockerForeignLayer:
		return types.OCIRestrictedLayer, err
	}
	return mt, err
}
