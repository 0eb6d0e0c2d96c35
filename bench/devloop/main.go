// Command devloop measures the edit loop: the time from a save to the
// first answer of the new code, for examples/kv, under kiln dev, under air
// (running the same program as one process) and, as the limit, go build
// of the same package alone. bench/dev runs it; see bench/dev.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/internal/testbin"
)

func main() {
	rounds := flag.Int("rounds", 5, "measured rounds (one more is run first and discarded)")
	kiln := flag.String("kiln", "", "the kiln binary")
	air := flag.String("air", "", "the air binary")
	root := flag.String("root", ".", "the kiln module's root")
	out := flag.String("out", "", "directory for the sides' output")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rounds, *kiln, *air, *root, *out); err != nil {
		fmt.Fprintln(os.Stderr, "devloop:", err)
		os.Exit(1)
	}
}

// side is one way of getting from a save to the new code's answer.
type side struct {
	name string
	dir  string // its own copy of the module
	url  string // where the new answer shows; "" for go build
	cmd  *exec.Cmd
	ms   []float64
}

func run(ctx context.Context, rounds int, kilnBin, airBin, root, outDir string) error {
	root, _ = filepath.Abs(root)
	work, err := os.MkdirTemp("", "kiln-bench-dev-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var sides []*side
	for _, name := range []string{"kiln dev", "air", "go build"} {
		dir := filepath.Join(work, strings.ReplaceAll(name, " ", "-"))
		if err := testbin.KVModule(root, dir); err != nil {
			return err
		}
		sides = append(sides, &side{name: name, dir: dir})
	}
	defer func() {
		for _, s := range sides {
			if s.cmd != nil && s.cmd.Process != nil {
				syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
				done := make(chan struct{})
				go func() { s.cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(15 * time.Second):
					syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				}
			}
		}
	}()
	// kiln dev: the whole topology (a router and three shards).
	k := sides[0]
	k.cmd = exec.Command(kilnBin, "dev", ".")
	line, err := start(k, outDir, regexp.MustCompile(`kiln: kv serving at (http://\S+)`))
	if err != nil {
		return err
	}
	k.url = line[1]
	// air: go build, then the program as one process (a leaf holds every
	// key), restarted on each change. delay matches kiln's debounce; the
	// old process gets SIGINT and air waits for it to exit before it
	// starts the new one (with SIGKILL alone, air started the new one
	// while the old one still held the port).
	a := sides[1]
	port, err := freePort()
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`root = "."
tmp_dir = "tmp"
[build]
cmd = "go build -o ./tmp/main ."
entrypoint = ["./tmp/main"]
delay = 100
include_ext = ["go", "mod", "sum"]
exclude_dir = ["tmp", ".git"]
send_interrupt = true
kill_delay = "5s"
[log]
time = true
`)
	if err := os.WriteFile(filepath.Join(a.dir, ".air.toml"), []byte(conf), 0o644); err != nil {
		return err
	}
	a.cmd = exec.Command(airBin, "-c", ".air.toml")
	a.cmd.Env = append(os.Environ(), "KILN_ROLE=leaf", "KILN_SERVICE=kv", "KILN_INDEX=0", "KILN_COUNT=1", fmt.Sprintf("KILN_ADDR=127.0.0.1:%d", port))
	if _, err := start(a, outDir, regexp.MustCompile(`msg=serving role=leaf`)); err != nil {
		return err
	}
	a.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	// go build: warm its cache as the others' is.
	g := sides[2]
	if _, err := goBuild(ctx, g.dir); err != nil {
		return err
	}

	for r := 0; r <= rounds; r++ {
		order := slices.Clone(sides)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			token := fmt.Sprintf("round %d of %s", r, s.name)
			d, err := measure(ctx, s, token)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", s.name, r, err)
			}
			if r > 0 {
				s.ms = append(s.ms, float64(d.Microseconds())/1000)
			}
			fmt.Fprintf(os.Stderr, "devloop: round %d, %s: %.0f ms%s\n", r, s.name, float64(d.Microseconds())/1000, map[bool]string{true: " (discarded)"}[r == 0])
			time.Sleep(time.Second) // let the swapped-out processes go
		}
	}
	fmt.Printf("| side | median ms | rounds, ms |\n|---|---|---|\n")
	med := map[string]float64{}
	for _, s := range sides {
		med[s.name] = median(s.ms)
		var each []string
		for _, v := range s.ms {
			each = append(each, fmt.Sprintf("%.0f", v))
		}
		fmt.Printf("| %s | %.0f | %s |\n", s.name, med[s.name], strings.Join(each, ", "))
	}
	fmt.Printf("\nkiln dev − go build: %+.0f ms (target ≤ +500 ms)\n", med["kiln dev"]-med["go build"])
	fmt.Printf("kiln dev / air: %.2f× (target < 1.00×)\n", med["kiln dev"]/med["air"])
	return nil
}

// measure edits s's copy so that GET /kv/x answers with token, and
// returns how long until it does.
func measure(ctx context.Context, s *side, token string) (time.Duration, error) {
	file := filepath.Join(s.dir, "store", "kv.go")
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	re := regexp.MustCompile(`"[^"]*no such key: "`)
	src := re.ReplaceAllString(string(b), fmt.Sprintf("%q", token+" no such key: "))
	start := time.Now()
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		return 0, err
	}
	if s.url == "" {
		return goBuild(ctx, s.dir)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := start.Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		resp, err := c.Get(s.url + "/kv/x")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), token) {
				return time.Since(start), nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, errors.New("the new answer did not come within 60 s")
}

func goBuild(ctx context.Context, dir string) (time.Duration, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "tmp", "gobuild"), ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return time.Since(start), nil
}

// start runs s.cmd in its own process group, its output going to a file
// in outDir, and waits for a line matching re.
func start(s *side, outDir string, re *regexp.Regexp) ([]string, error) {
	s.cmd.Dir = s.dir
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	log := io.Discard
	if outDir != "" {
		f, err := os.Create(filepath.Join(outDir, strings.ReplaceAll(s.name, " ", "-")+".log"))
		if err != nil {
			return nil, err
		}
		log = f
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
	}()
	select {
	case m := <-found:
		return m, nil
	case <-time.After(120 * time.Second):
		return nil, fmt.Errorf("%s did not start within 120 s", s.name)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
