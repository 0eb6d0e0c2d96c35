package patterns

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/spec"
)

func scatterSvc(leaves int, gather, policy string, timeout time.Duration) *spec.Service {
	return &spec.Service{Name: "search", Scatter: &spec.Scatter{
		Leaves: leaves, Gather: gather, OnLeafError: policy, Timeout: spec.Duration(timeout),
	}}
}

func startRoot(t *testing.T, svc *spec.Service, leaves []*url.URL, opts Options) *httptest.Server {
	t.Helper()
	h, err := NewRoot(svc, leaves, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// arrayLeaf answers a JSON array naming itself and echoing what it was sent.
func arrayLeaf(i int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		json.NewEncoder(w).Encode([]string{fmt.Sprintf("%d:%s %s?%s %s %s", i, r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Trace"), body)})
	})
}

func TestRootSendsEverythingToEveryLeafAndConcatenates(t *testing.T) {
	root := startRoot(t, scatterSvc(3, spec.GatherConcat, spec.OnLeafErrorFail, time.Second), startBackends(t, 3, arrayLeaf), Options{})
	req, _ := http.NewRequest("POST", root.URL+"/find?q=a", strings.NewReader("payload"))
	req.Header.Set("X-Trace", "t1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := []string{"0:POST /find?q=a t1 payload", "1:POST /find?q=a t1 payload", "2:POST /find?q=a t1 payload"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if b := resp.Header.Get(HeaderBackend); b != "leaf-0,leaf-1,leaf-2" {
		t.Errorf("%s = %q", HeaderBackend, b)
	}
	if m := resp.Header.Get(HeaderMissing); m != "" {
		t.Errorf("%s = %q on a complete answer", HeaderMissing, m)
	}
}

// TestRootSendsEveryLeafTheEndToEndHeaders: each leaf gets the client's
// end-to-end headers, none of its hop-by-hop ones, and the client added to
// X-Forwarded-For, with a body or without.
func TestRootSendsEveryLeafTheEndToEndHeaders(t *testing.T) {
	headerLeaf := func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode([]string{fmt.Sprintf("%d trace=%s xff=%s keep-alive=%q proxy-auth=%q",
				i, r.Header.Get("X-Trace"), r.Header.Get("X-Forwarded-For"), r.Header.Get("Keep-Alive"), r.Header.Get("Proxy-Authorization"))})
		})
	}
	root := startRoot(t, scatterSvc(3, spec.GatherConcat, spec.OnLeafErrorFail, time.Second), startBackends(t, 3, headerLeaf), Options{})
	for _, body := range []string{"", "payload"} {
		req, _ := http.NewRequest("POST", root.URL+"/find", strings.NewReader(body))
		req.Header.Set("X-Trace", "t1")
		req.Header.Set("X-Forwarded-For", "10.0.0.1")
		req.Header.Set("Keep-Alive", "timeout=5")
		req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := range 3 {
			want = append(want, fmt.Sprintf("%d trace=t1 xff=10.0.0.1, 127.0.0.1 keep-alive=\"\" proxy-auth=\"\"", i))
		}
		if !slices.Equal(got, want) {
			t.Errorf("body %q: leaves got\n%q\nwant\n%q", body, got, want)
		}
	}
}

func TestRootLeafFailures(t *testing.T) {
	const timeout = 300 * time.Millisecond
	slow := func(i int) http.Handler {
		if i != 1 {
			return arrayLeaf(i)
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		})
	}
	broken := func(i int) http.Handler {
		if i != 2 {
			return arrayLeaf(i)
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "disk on fire", 500)
		})
	}
	notJSON := func(i int) http.Handler {
		if i != 0 {
			return arrayLeaf(i)
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") })
	}
	for _, tc := range []struct {
		name     string
		leaves   func(t *testing.T) []*url.URL
		policy   string
		status   int
		missing  string
		backends string
		body     string // substring
	}{
		{"dead leaf, partial", deadLeaf(1), spec.OnLeafErrorPartial, 200, "leaf-1", "leaf-0,leaf-2", `"0:`},
		{"dead leaf, fail", deadLeaf(1), spec.OnLeafErrorFail, 502, "leaf-1", "", "leaf-1 failed: "},
		{"late leaf, partial", backends(slow), spec.OnLeafErrorPartial, 200, "leaf-1", "leaf-0,leaf-2", `"2:`},
		{"late leaf, fail", backends(slow), spec.OnLeafErrorFail, 504, "leaf-1", "", "leaf-1 failed: no answer within 300ms"},
		{"5xx leaf, partial", backends(broken), spec.OnLeafErrorPartial, 200, "leaf-2", "leaf-0,leaf-1", `"1:`},
		{"5xx leaf, fail", backends(broken), spec.OnLeafErrorFail, 502, "leaf-2", "", "leaf-2 failed: answered 500"},
		{"bad JSON, partial", backends(notJSON), spec.OnLeafErrorPartial, 200, "leaf-0", "leaf-1,leaf-2", `"2:`},
		{"bad JSON, fail", backends(notJSON), spec.OnLeafErrorFail, 502, "", "", "leaf-0: answer is not a JSON array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := startRoot(t, scatterSvc(3, spec.GatherConcat, tc.policy, timeout), tc.leaves(t), Options{Logger: quiet})
			start := time.Now()
			resp, body := get(t, root.URL+"/q")
			if took := time.Since(start); took > timeout+time.Second {
				t.Errorf("answer took %s; the per-leaf timeout is %s", took, timeout)
			}
			if resp.StatusCode != tc.status || resp.Header.Get(HeaderMissing) != tc.missing ||
				resp.Header.Get(HeaderBackend) != tc.backends || !strings.Contains(body, tc.body) {
				t.Fatalf("got %d missing=%q backend=%q body=%q\nwant %d missing=%q backend=%q body~%q",
					resp.StatusCode, resp.Header.Get(HeaderMissing), resp.Header.Get(HeaderBackend), body,
					tc.status, tc.missing, tc.backends, tc.body)
			}
		})
	}
}

func backends(h func(int) http.Handler) func(t *testing.T) []*url.URL {
	return func(t *testing.T) []*url.URL { return startBackends(t, 3, h) }
}

// deadLeaf gives three leaves of which leaf i refuses connections.
func deadLeaf(i int) func(t *testing.T) []*url.URL {
	return func(t *testing.T) []*url.URL {
		ls := startBackends(t, 3, arrayLeaf)
		ls[i], _ = url.Parse("http://" + closedAddr(t))
		return ls
	}
}

func TestRootFirstAnswersWithoutWaiting(t *testing.T) {
	leaves := startBackends(t, 3, func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if i != 2 {
				select { // a slow replica of the same data
				case <-time.After(3 * time.Second):
				case <-r.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "from %d", i)
		})
	})
	root := startRoot(t, scatterSvc(3, spec.GatherFirst, spec.OnLeafErrorFail, 5*time.Second), leaves, Options{})
	start := time.Now()
	resp, body := get(t, root.URL+"/")
	if body != "from 2" || resp.Header.Get(HeaderBackend) != "leaf-2" || time.Since(start) > time.Second {
		t.Fatalf("got %q from %s after %s; want leaf-2's answer at once", body, resp.Header.Get(HeaderBackend), time.Since(start))
	}
}

func TestRootMergeAndCustomGather(t *testing.T) {
	objLeaf := func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"count":{"leaf%d":%d}}`, i, i+1)
		})
	}
	root := startRoot(t, scatterSvc(3, spec.GatherMerge, spec.OnLeafErrorFail, time.Second), startBackends(t, 3, objLeaf), Options{})
	if _, body := get(t, root.URL+"/"); body != `{"count":{"leaf0":1,"leaf1":2,"leaf2":3}}`+"\n" {
		t.Fatalf("merge = %q", body)
	}

	sum := func(parts []LeafResponse) (Response, error) {
		total := 0
		for _, p := range parts {
			var n int
			fmt.Sscan(string(p.Body), &n)
			total += n
		}
		return Response{Status: 201, Body: []byte(fmt.Sprint(total))}, nil
	}
	numLeaf := func(i int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, (i+1)*10) })
	}
	root = startRoot(t, scatterSvc(3, "sum", spec.OnLeafErrorFail, time.Second), startBackends(t, 3, numLeaf), Options{Gather: sum})
	if resp, body := get(t, root.URL+"/"); resp.StatusCode != 201 || body != "60" {
		t.Fatalf("custom gather = %d %q", resp.StatusCode, body)
	}
	if _, err := NewRoot(scatterSvc(3, "sum", spec.OnLeafErrorFail, time.Second), startBackends(t, 3, numLeaf), Options{}); err == nil || !strings.Contains(err.Error(), "sdk.Gather") {
		t.Fatalf("unregistered gather: err = %v", err)
	}
}

// TestRootWaitsForALeafComingBack: a leaf that refuses connections while
// it restarts, and is back within the per-leaf timeout, is in the answer.
// One that stays down is named missing, and once it has been waited for
// in vain, the next answers come without waiting for it.
func TestRootWaitsForALeafComingBack(t *testing.T) {
	const timeout = 800 * time.Millisecond
	svc := scatterSvc(3, spec.GatherConcat, spec.OnLeafErrorPartial, timeout)

	ls := deadLeaf(1)(t)
	root := startRoot(t, svc, ls, Options{Logger: quiet})
	srv := &http.Server{Handler: arrayLeaf(1)}
	t.Cleanup(func() { srv.Close() })
	const back = 200 * time.Millisecond
	time.AfterFunc(back, func() {
		ln, err := net.Listen("tcp", ls[1].Host)
		if err != nil {
			t.Errorf("leaf-1 listening again: %v", err)
			return
		}
		srv.Serve(ln)
	})
	start := time.Now()
	resp, body := get(t, root.URL+"/q")
	if resp.Header.Get(HeaderMissing) != "" || !strings.Contains(body, `"1:`) {
		t.Fatalf("leaf-1 back %s into the request: missing %q, body %s; want leaf-1's answer in it", back, resp.Header.Get(HeaderMissing), body)
	}
	if took := time.Since(start); took < back {
		t.Errorf("answered in %s, before leaf-1 was back", took)
	}

	root = startRoot(t, svc, deadLeaf(1)(t), Options{Logger: quiet})
	for i, limit := range []time.Duration{timeout + time.Second, timeout / 2} {
		start := time.Now()
		if resp, _ = get(t, root.URL+"/q"); resp.Header.Get(HeaderMissing) != "leaf-1" {
			t.Fatalf("request %d, leaf-1 down: missing %q, want leaf-1", i, resp.Header.Get(HeaderMissing))
		}
		if took := time.Since(start); took > limit {
			t.Errorf("request %d, leaf-1 down: answered in %s, want at most %s", i, took, limit)
		}
	}
}
