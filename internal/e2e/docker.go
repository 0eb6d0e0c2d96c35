package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Docker returns a client of the machine's Docker engine (DOCKER_HOST, else
// the local socket), or skips (fails under CI) when none answers.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(client.FromEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
	}
	Require(t, "a Docker engine", err, "start dockerd (Docker 19.03 or later), or point DOCKER_HOST at one")
	t.Cleanup(func() { c.Close() })
	return c
}
