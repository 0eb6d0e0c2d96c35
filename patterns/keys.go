package patterns

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/kiln-dev/kiln/spec"
)

// KeyFunc takes a shard key from a request. It returns an error wrapping
// ErrNoKey when the request carries none. It must not read the body, which
// the router forwards after it.
type KeyFunc func(*http.Request) (string, error)

// ErrNoKey means a request carries no shard key; the router answers 400.
var ErrNoKey = errors.New("no shard key in request")

// KeyExtractor builds the KeyFunc for a key rule. fn is used for rules that
// name a Go function (spec.Key.Func).
func KeyExtractor(k spec.Key, fn KeyFunc) (KeyFunc, error) {
	missing := fmt.Errorf("%w: the key comes from %s", ErrNoKey, k)
	switch {
	case k.PathSegment > 0:
		n := k.PathSegment
		return func(r *http.Request) (string, error) {
			if s := PathSegment(r.URL.Path, n); s != "" {
				return s, nil
			}
			return "", missing
		}, nil
	case k.Regexp != "":
		re, err := regexp.Compile(k.Regexp)
		if err != nil {
			return nil, fmt.Errorf("shard key regexp: %w", err)
		}
		if re.NumSubexp() < 1 {
			return nil, fmt.Errorf("shard key regexp %q has no capture group", k.Regexp)
		}
		return func(r *http.Request) (string, error) {
			if m := re.FindStringSubmatch(r.URL.Path); len(m) > 1 && m[1] != "" {
				return m[1], nil
			}
			return "", missing
		}, nil
	case k.Header != "":
		h := http.CanonicalHeaderKey(k.Header)
		return func(r *http.Request) (string, error) {
			if v := r.Header.Get(h); v != "" {
				return v, nil
			}
			return "", missing
		}, nil
	case k.Query != "":
		q := k.Query
		return func(r *http.Request) (string, error) {
			if v := r.URL.Query().Get(q); v != "" {
				return v, nil
			}
			return "", missing
		}, nil
	case k.Func != "":
		if fn == nil {
			return nil, fmt.Errorf("shard key function %q is not registered: pass it to the SDK with sdk.KeyFunc", k.Func)
		}
		return func(r *http.Request) (string, error) {
			v, err := fn(r)
			switch {
			case err != nil:
				return "", fmt.Errorf("%w: key function %q: %w", ErrNoKey, k.Func, err)
			case v == "":
				return "", missing
			}
			return v, nil
		}, nil
	}
	return nil, errors.New("shard key: no rule set")
}

// PathSegment returns the n-th (1-based) segment of path, or "".
func PathSegment(path string, n int) string {
	path = strings.TrimPrefix(path, "/")
	for i := 1; ; i++ {
		seg, rest, found := strings.Cut(path, "/")
		if i == n {
			return seg
		}
		if !found {
			return ""
		}
		path = rest
	}
}
