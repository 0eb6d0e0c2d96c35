package builder

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
)

// TestBinaryLayer streams a binary's layer and compares it with the tar
// archive/tar writes, and its digests, first computed, then cached.
func TestBinaryLayer(t *testing.T) {
	bin, err := testbin.Build(t.TempDir(), "./examples/hello")
	if err != nil {
		t.Fatal(err)
	}
	content, _ := os.ReadFile(bin)
	mtime := time.Unix(1234567890, 0)
	var want bytes.Buffer
	tw := tar.NewWriter(&want)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "hello", Mode: 0o755, Size: int64(len(content)), ModTime: mtime, Format: tar.FormatPAX})
	tw.Write(content)
	tw.Close()
	sum := sha256.Sum256(want.Bytes())
	binSum := sha256.Sum256(content)

	cache := t.TempDir()
	for _, pass := range []string{"computed", "cached"} {
		b, l, err := loadBinary(bin, cache, mtime)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		size, _ := l.Size()
		d, _ := l.Digest()
		if !bytes.Equal(got, want.Bytes()) || size != int64(want.Len()) || d.Hex != hex.EncodeToString(sum[:]) || b.SHA256 != hex.EncodeToString(binSum[:]) {
			t.Fatalf("%s: layer of %d bytes (size %d, digest %s, binary %s), want %d bytes", pass, len(got), size, d, b.SHA256, want.Len())
		}
		// Read in part, then copied (as net/http sends a body of known
		// length), and copied into a file: the same bytes.
		rc, _ = l.Uncompressed()
		var parts bytes.Buffer
		io.CopyN(&parts, rc, 1000)
		io.Copy(&parts, rc)
		rc.Close()
		f, _ := os.CreateTemp(t.TempDir(), "layer")
		rc, _ = l.Uncompressed()
		io.Copy(f, rc)
		rc.Close()
		f.Close()
		inFile, _ := os.ReadFile(f.Name())
		if !bytes.Equal(parts.Bytes(), want.Bytes()) || !bytes.Equal(inFile, want.Bytes()) {
			t.Fatalf("%s: the layer read in part then copied is %d bytes, copied into a file %d, want %d", pass, parts.Len(), len(inFile), want.Len())
		}
		if b.Info == nil || b.Info.Path != "github.com/kiln-dev/kiln/examples/hello" {
			t.Fatalf("%s: build info %v", pass, b.Info)
		}
	}
	if files, _ := os.ReadDir(filepath.Join(cache, "binaries")); len(files) != 1 {
		t.Fatalf("%d cache records, want 1", len(files))
	}
	if goBuildID(bin) == "" {
		t.Fatal("no Go build ID")
	}
}
