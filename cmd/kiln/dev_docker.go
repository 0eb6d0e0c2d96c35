package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/deployer/docker"
	"github.com/kiln-dev/kiln/patterns"
)

// dockerReadyTimeout is how long a new program has to say it serves
// before kiln dev --target docker keeps the old one, as the local
// target's default.
const dockerReadyTimeout = 30 * time.Second

// dockerDev runs the app on the Docker engine: each build's images are
// loaded into the engine, and the engine rolled over to them pod by pod
// (docker.Engine.Roll). Stopping removes everything of the app, as kiln
// run --target docker does on Ctrl-C.
type dockerDev struct {
	cmd  *cobra.Command
	port int
	e    *docker.Engine
	app  string             // the app on the engine, once the first swap began
	eps  patterns.Discovery // its services' URLs, as last printed
	// stopFollow ends the copy of the programs' output, which closes
	// followed.
	stopFollow context.CancelFunc
	followed   chan struct{}
}

func newDockerDev(cmd *cobra.Command, port int) (*dockerDev, error) {
	e, err := docker.Connect(cmd.Context())
	if err != nil {
		return nil, err
	}
	return &dockerDev{cmd: cmd, port: port, e: e}, nil
}

func (d *dockerDev) prepare(ctx context.Context, pr *project, t *patterns.Topology) (func(context.Context) (string, error), error) {
	images, err := buildImages(d.cmd, pr, publish.Engine, "", builder.OCI)
	if err != nil {
		return nil, err
	}
	p, err := docker.Render(pr.app, docker.Options{Images: images, Port: d.port})
	if err != nil {
		return nil, pr.fieldError(err)
	}
	return func(ctx context.Context) (string, error) { return d.swap(ctx, p) }, nil
}

// swap starts the app the first time, and rolls it over after that.
func (d *dockerDev) swap(ctx context.Context, p *docker.Plan) (string, error) {
	if d.app != p.App {
		return d.start(ctx, p)
	}
	sw, err := d.e.Roll(ctx, p, docker.RollOptions{ReadyTimeout: dockerReadyTimeout})
	if err != nil {
		if sw.Changed() {
			err = fmt.Errorf("%w\n(before that it had %s)", err, rollSummary(sw))
		}
		return "", err
	}
	d.announce(sw.Endpoints)
	return rollSummary(sw), nil
}

// start runs p on the engine after removing what a kiln run or dev of
// the same app left (one killed before it could), and the app dev ran
// until now, if the build renamed it.
func (d *dockerDev) start(ctx context.Context, p *docker.Plan) (string, error) {
	renamed := d.app
	if renamed != "" {
		d.down()
	}
	if _, err := d.e.Down(ctx, p.App); err != nil {
		return "", err
	}
	d.app = p.App
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.stopFollow, d.followed = cancel, make(chan struct{})
	// From before Apply, so that the programs' first lines are seen.
	go func() { d.e.Follow(fctx, p.App, d.cmd.ErrOrStderr()); close(d.followed) }()
	eps, err := d.e.Apply(ctx, p)
	if err != nil {
		return "", err
	}
	d.eps = nil
	d.announce(eps)
	if renamed != "" {
		return fmt.Sprintf("app %s removed, %s started", renamed, p.App), nil
	}
	return "", nil
}

// announce prints the serving line of each service whose URL is new.
func (d *dockerDev) announce(eps patterns.Discovery) {
	for _, ep := range eps {
		if u, ok := d.eps.Lookup(ep.Service); !ok || u != ep.URL {
			fmt.Fprintf(d.cmd.OutOrStdout(), "kiln: %s serving at %s\n", ep.Service, ep.URL)
		}
	}
	d.eps = eps
}

func (d *dockerDev) stop() {
	d.down()
	d.e.Close()
}

// down removes the app from the engine, all of it, by its labels.
func (d *dockerDev) down() {
	if d.app == "" {
		return
	}
	d.stopFollow()
	<-d.followed
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := d.cmd.ErrOrStderr()
	fmt.Fprintf(out, "kiln: stopping %s\n", d.app)
	removed, err := d.e.Down(ctx, d.app)
	if err != nil {
		fmt.Fprintf(out, "kiln: removing %s from the Docker engine: %v\n", d.app, err)
	} else {
		fmt.Fprintf(out, "kiln: %s removed from the Docker engine (%d objects)\n", d.app, len(removed))
	}
	d.app = ""
}

// rollSummary says what a roll did, in a few words.
func rollSummary(sw docker.Swap) string {
	return summary("no pod changed", swapPart{"replaced", sw.Replaced}, swapPart{"recreated", sw.Recreated}, swapPart{"started", sw.Started}, swapPart{"stopped", sw.Stopped})
}
