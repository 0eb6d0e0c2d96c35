package patterns

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

func TestKeyExtractors(t *testing.T) {
	tenant := func(r *http.Request) (string, error) {
		host, _, _ := strings.Cut(r.Host, ".")
		return host, nil
	}
	for _, tc := range []struct {
		name    string
		key     spec.Key
		target  string
		header  string
		want    string
		missing bool
	}{
		{"segment", spec.Key{PathSegment: 2}, "/kv/alice", "", "alice", false},
		{"segment deeper", spec.Key{PathSegment: 2}, "/kv/alice/profile", "", "alice", false},
		{"segment absent", spec.Key{PathSegment: 2}, "/kv", "", "", true},
		{"segment empty", spec.Key{PathSegment: 2}, "/kv/", "", "", true},
		{"segment first", spec.Key{PathSegment: 1}, "/bob", "", "bob", false},
		{"regexp", spec.Key{Regexp: `^/users/(\d+)`}, "/users/42/posts", "", "42", false},
		{"regexp no match", spec.Key{Regexp: `^/users/(\d+)`}, "/users/abc", "", "", true},
		{"header", spec.Key{Header: "x-tenant"}, "/", "acme", "acme", false},
		{"header absent", spec.Key{Header: "x-tenant"}, "/", "", "", true},
		{"query", spec.Key{Query: "user"}, "/q?user=carol&x=1", "", "carol", false},
		{"query absent", spec.Key{Query: "user"}, "/q?x=1", "", "", true},
		{"func", spec.Key{Func: "tenant"}, "/", "", "example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := KeyExtractor(tc.key, tenant)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", tc.target, nil)
			if tc.header != "" {
				r.Header.Set("X-Tenant", tc.header)
			}
			got, err := f(r)
			if tc.missing {
				if !errors.Is(err, ErrNoKey) {
					t.Fatalf("got key %q, err %v; want ErrNoKey", got, err)
				}
				if !strings.Contains(err.Error(), tc.key.String()) {
					t.Errorf("error %q does not name the key rule %q", err, tc.key)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestKeyFuncMustBeRegistered(t *testing.T) {
	_, err := KeyExtractor(spec.Key{Func: "tenant"}, nil)
	if err == nil || !strings.Contains(err.Error(), "sdk.KeyFunc") {
		t.Fatalf("err = %v; want a hint to register the function with sdk.KeyFunc", err)
	}
}

func FuzzPathSegment(f *testing.F) {
	for _, s := range []string{"/kv/a", "", "/", "//", "/a/b/c", "a/b"} {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, path string, n int) {
		if n < 1 || n > 64 {
			return
		}
		seg := PathSegment(path, n)
		if strings.Contains(seg, "/") {
			t.Fatalf("segment %q of %q contains a slash", seg, path)
		}
		if seg != "" && !strings.Contains(path, seg) {
			t.Fatalf("segment %q is not part of %q", seg, path)
		}
		// Agrees with a plain split.
		parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
		want := ""
		if n <= len(parts) {
			want = parts[n-1]
		}
		if seg != want {
			t.Fatalf("PathSegment(%q, %d) = %q, want %q", path, n, seg, want)
		}
	})
}

func FuzzKeyExtractors(f *testing.F) {
	f.Add("/users/42", "x", "k=v")
	f.Add("", "", "")
	f.Add("/%zz", "\x00", "%%")
	keys := []spec.Key{{PathSegment: 1}, {PathSegment: 3}, {Regexp: `/(\w+)$`}, {Header: "X-K"}, {Query: "k"}}
	f.Fuzz(func(t *testing.T, path, header, query string) {
		r := &http.Request{Header: http.Header{"X-K": {header}}}
		r.URL = &url.URL{Path: path, RawQuery: query}
		for _, k := range keys {
			ex, err := KeyExtractor(k, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ex(r)
			if (err == nil) == (got == "") {
				t.Fatalf("%s on %q: key %q with error %v; want exactly one of key or error", k, path, got, err)
			}
			if err == nil && ShardOf(got, 7) != ShardOf(got, 7) {
				t.Fatal("unstable shard")
			}
		}
	})
}
