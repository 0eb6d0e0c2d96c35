// Command sidecar is a test sidecar and init container.
//
// Without arguments it asks the program in its pod for /healthz on
// 127.0.0.1:8080 once a second, prints what it got, and serves the last
// answer on :9090. It exits 1 when the program stays unreachable for 10 s,
// so a sidecar that cannot reach its program is seen restarting.
//
// With arguments it does one thing first:
//
//	write FILE TEXT   writes TEXT to FILE and exits 0
//	check FILE TEXT   exits 0 if FILE holds TEXT, else 3
//	exit N            prints a line and exits N
//	watch FILE TEXT   like check, then writes FILE.sidecar and runs as
//	                  without arguments
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "write":
			if err := os.WriteFile(os.Args[2], []byte(os.Args[3]), 0o644); err != nil {
				fmt.Printf("sidecar: %v\n", err)
				os.Exit(3)
			}
			fmt.Printf("sidecar: wrote %s\n", os.Args[2])
			os.Exit(0)
		case "check":
			check(os.Args[2], os.Args[3])
			os.Exit(0)
		case "exit":
			n, _ := strconv.Atoi(os.Args[2])
			fmt.Printf("sidecar: exiting with status %d as asked\n", n)
			os.Exit(n)
		case "watch":
			check(os.Args[2], os.Args[3])
			if err := os.WriteFile(os.Args[2]+".sidecar", []byte("sidecar"), 0o644); err != nil {
				fmt.Printf("sidecar: %v\n", err)
				os.Exit(3)
			}
			fmt.Printf("sidecar: wrote %s.sidecar\n", os.Args[2])
		}
	}
	serve()
}

func check(file, text string) {
	b, err := os.ReadFile(file)
	if err != nil || string(b) != text {
		fmt.Printf("sidecar: %s holds %q (%v), want %q\n", file, b, err, text)
		os.Exit(3)
	}
	fmt.Printf("sidecar: %s holds %q\n", file, text)
}

func serve() {
	var mu sync.Mutex
	last := ""
	go http.ListenAndServe(":9090", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, last)
	}))
	client := &http.Client{Timeout: time.Second}
	failing := time.Now()
	for {
		resp, err := client.Get("http://127.0.0.1:8080/healthz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			mu.Unlock()
			fmt.Printf("sidecar: program answered %d %q\n", resp.StatusCode, body)
			failing = time.Now()
		} else {
			fmt.Printf("sidecar: %v\n", err)
			if time.Since(failing) > 10*time.Second {
				os.Exit(1)
			}
		}
		time.Sleep(time.Second)
	}
}
