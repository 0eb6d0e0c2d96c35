// Command netprobe is the test program of the network-policy test on the
// real node. Its image is FROM scratch, with no shell, so the program
// itself makes the requests and reports them in its log.
//
//	netprobe serve ADDR   answers every request with 200 "ok"
//	netprobe poll URL     asks URL for ever, four times a second, and prints
//	                      one line a try: "<unix ms> 200" (or another
//	                      status), or "<unix ms> error <why>"
//
// Each try of poll dials afresh: a policy cuts new connections, and a kept
// one would carry on past it.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: netprobe serve ADDR | netprobe poll URL")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		err := http.ListenAndServe(os.Args[2], http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "ok\n")
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case "poll":
		poll(os.Args[2])
	default:
		fmt.Fprintf(os.Stderr, "netprobe: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func poll(url string) {
	c := &http.Client{
		Timeout:   time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	for {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			fmt.Printf("%d error %v\n", start.UnixMilli(), err)
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			fmt.Printf("%d %d\n", start.UnixMilli(), resp.StatusCode)
		}
		time.Sleep(250*time.Millisecond - time.Since(start))
	}
}
