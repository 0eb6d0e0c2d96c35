package examples_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
	"github.com/kiln-dev/kiln/patterns"
)

// product is what catalog answers; names are enough to compare.
type product struct {
	Name string `json:"name"`
}

func productNames(t *testing.T, body string) []string {
	t.Helper()
	var ps []product
	if err := json.Unmarshal([]byte(body), &ps); err != nil {
		t.Fatalf("answer %q is not a JSON array of products: %v", body, err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func TestShopCartThroughWebLandsOnOneShard(t *testing.T) {
	forms(t, "shop", func(t *testing.T, form string) {
		d, web := deploy(t, form)
		if got := d.Endpoints().Names(); !slices.Equal(got, []string{"web", "carts", "catalog"}) {
			t.Fatalf("endpoints %v; want web, carts, catalog in the app's order", got)
		}
		shards := map[string]int{}
		for i := range 30 {
			user := fmt.Sprintf("user-%d", i)
			cart := fmt.Sprintf(`["tea","mug-%d"]`, i)
			resp, body := do(t, "PUT", web+"/cart/"+user, cart)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("PUT /cart/%s through web = %d %q, want 204", user, resp.StatusCode, body)
			}
			shard := resp.Header.Get("Shop-Cart-Shard")
			shards[shard]++
			resp, body = do(t, "GET", web+"/cart/"+user, "")
			if resp.StatusCode != 200 || strings.TrimSpace(body) != cart {
				t.Fatalf("GET /cart/%s through web = %d %q, want %s", user, resp.StatusCode, body, cart)
			}
			if got := resp.Header.Get("Shop-Cart-Shard"); got != shard {
				t.Fatalf("%s: stored on %s, read from %s", user, shard, got)
			}
			// Exactly one shard holds it: the one web named.
			var holders []string
			for j := range 3 {
				p := process(t, d, fmt.Sprintf("carts/shard-%d", j))
				if resp, _ := do(t, "GET", "http://"+p.Addr+"/cart/"+user, ""); resp.StatusCode == 200 {
					holders = append(holders, fmt.Sprintf("shard-%d", j))
				}
			}
			if !slices.Equal(holders, []string{shard}) {
				t.Fatalf("%s is held by %v; want only %s", user, holders, shard)
			}
		}
		if len(shards) != 3 {
			t.Fatalf("30 carts landed on %v; want all 3 shards used", shards)
		}
		if resp, _ := do(t, "GET", web+"/cart/nobody", ""); resp.StatusCode != 404 {
			t.Fatalf("GET of a cart never stored = %d, want carts' 404 passed on", resp.StatusCode)
		}
	})
}

func TestShopSearchThroughWebGathersEveryLeafAndNamesAStoppedOne(t *testing.T) {
	forms(t, "shop", func(t *testing.T, form string) {
		d, web := deploy(t, form)
		resp, body := do(t, "GET", web+"/find?q=tea", "")
		want := []string{"black tea", "green tea", "tea towel", "teapot"}
		if got := productNames(t, body); resp.StatusCode != 200 || !slices.Equal(got, want) {
			t.Fatalf("find?q=tea through web = %d %v, want 200 %v", resp.StatusCode, got, want)
		}
		if m := resp.Header.Get(patterns.HeaderMissing); m != "" {
			t.Fatalf("every leaf up, yet %s = %q", patterns.HeaderMissing, m)
		}
		resp, body = do(t, "GET", web+"/find?q=", "")
		all := productNames(t, body)
		if len(all) != 16 {
			t.Fatalf("find?q= gathered %d products, want all 16 from 4 leaves: %v", len(all), all)
		}

		// Stop leaf 1: the catalog root leaves it out, and web says so.
		leaf := process(t, d, "catalog/leaf-1")
		leafDirect := productNames(t, func() string { _, b := do(t, "GET", "http://"+leaf.Addr+"/find?q=", ""); return b }())
		freeze(t, leaf.PID)
		defer syscall.Kill(leaf.PID, syscall.SIGCONT)
		resp, body = do(t, "GET", web+"/find?q=", "")
		if resp.StatusCode != 200 || resp.Header.Get(patterns.HeaderMissing) != "leaf-1" {
			t.Fatalf("with catalog leaf-1 stopped: %d, %s = %q; want 200 naming leaf-1", resp.StatusCode, patterns.HeaderMissing, resp.Header.Get(patterns.HeaderMissing))
		}
		partial := productNames(t, body)
		wantPartial := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return slices.Contains(leafDirect, n) })
		if !slices.Equal(partial, wantPartial) || len(leafDirect) != 4 {
			t.Fatalf("partial answer %v; want every product but leaf-1's %v", partial, leafDirect)
		}
	})
}

func TestShopDriverBringsUpEveryServiceAndCtrlCStopsAll(t *testing.T) {
	mark := fmt.Sprintf("shop-%d", time.Now().UnixNano())
	cmd, web := startDriver(t, bins["shop"], mark)
	// driver + web (router, 2 replicas) + carts (router, 3 shards) +
	// catalog (root, 4 leaves)
	if n := len(marked(mark)); n != 13 {
		t.Fatalf("%d processes run; want the driver and 12 of the topology", n)
	}
	if resp, _ := do(t, "PUT", web+"/cart/ann", `["tea"]`); resp.StatusCode != 204 {
		t.Fatalf("PUT through web: %d", resp.StatusCode)
	}
	if err := testbin.Interrupt(cmd, 20*time.Second); err != nil {
		t.Fatalf("driver after Ctrl-C: %v; want exit status 0", err)
	}
	waitNoneMarked(t, mark, time.Second)
}

func TestDialOfAServiceTheAppLacksStopsTheProgram(t *testing.T) {
	// The shop binary in a role, told its app holds only web and carts:
	// its Dial("catalog") is refused at start-up, before it serves.
	cmd := exec.Command(bins["shop"])
	cmd.Env = append(cmd.Environ(), "KILN_ROLE=replica", "KILN_SERVICE=web", "KILN_ADDR=127.0.0.1:0",
		"KILN_SERVICES=web=http://127.0.0.1:1 carts=http://127.0.0.1:2")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("shop with no catalog: %v\n%s\nwant exit status 2", err, out)
	}
	want := `Dial("catalog") at main.go:26: app "shop" has no such service; its services are "web", "carts"`
	if !strings.Contains(string(out), want) {
		t.Fatalf("output %q; want it to contain %q", out, want)
	}
}
