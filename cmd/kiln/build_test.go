package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBuildCommand runs kiln build into an OCI layout twice: the same
// reference and digest on stdout, progress on stderr, and a no-op the
// second time. Bad input fails with errors that name the fix.
func TestBuildCommand(t *testing.T) {
	run := kiln(t)
	out := filepath.Join(t.TempDir(), "kv")
	cache := t.TempDir()
	build := func(args ...string) (string, string, error) {
		cmd := run(append([]string{"build"}, args...)...)
		cmd.Env = append(os.Environ(), "KILN_CACHE="+cache)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	first, log, err := build("./examples/kv", "--output", "oci:"+out)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if !regexp.MustCompile(`^kiln\.local/kv:latest@sha256:[0-9a-f]{64}\n$`).MatchString(first) || !strings.Contains(log, "kiln build: wrote OCI layout") {
		t.Fatalf("stdout %q, stderr:\n%s", first, log)
	}
	second, log, err := build("./examples/kv", "--output", "oci:"+out)
	if err != nil || second != first || !strings.Contains(log, "unchanged") {
		t.Fatalf("rebuild: %v, stdout %q (want %q), stderr:\n%s", err, second, first, log)
	}
	if _, err := os.Stat(out + ".spdx.json"); err != nil {
		t.Fatalf("no SBOM: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"./spec"}, "./spec is package spec, with no main and no //kiln:service annotation"},
		{[]string{"./no/such/dir"}, "./no/such/dir is not a Go package that builds"},
		{[]string{"--platform", "windows/amd64", "./examples/kv"}, "unsupported platform windows/amd64"},
		{[]string{"--output", "s3:bucket", "./examples/kv"}, "want oci:DIR, tar:FILE, docker or registry"},
		{[]string{"--output", "registry", "./examples/kv"}, "--output registry needs --repo"},
		{[]string{"--builder", "kaniko", "./examples/kv"}, `--builder "kaniko": want oci (no daemon), docker or buildkit`},
		{[]string{"--base", "127.0.0.1:1/base:v1", "./examples/kv"}, "base image 127.0.0.1:1/base:v1 is unreachable"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, log, err := build(tc.args...)
			if err == nil || !strings.Contains(log, tc.want) {
				t.Fatalf("got %v: %s\nwant an error containing %q", err, log, tc.want)
			}
		})
	}
	if out, err := run("build", "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "--output") {
		t.Fatalf("kiln build --help: %v\n%s", err, out)
	}
}
