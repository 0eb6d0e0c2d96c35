package main

import (
	"cmp"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kiln-dev/kiln/builder"
	"github.com/kiln-dev/kiln/builder/publish"
	"github.com/kiln-dev/kiln/deployer/docker"
	"github.com/kiln-dev/kiln/patterns"
)

// dockerImages are the images of every service for the Docker target:
// the --image flags when given, else each program built and loaded into
// the engine.
func dockerImages(cmd *cobra.Command, pr *project, images []string, backend string) (docker.Options, error) {
	// Refused before any image is built.
	if t, err := patterns.Build(pr.app); err == nil {
		if err := cmp.Or(t.NoJobs("docker"), t.NoLeases("docker")); err != nil {
			return docker.Options{}, err
		}
	}
	ro, err := parseImages(images, pr.app)
	if err != nil {
		return docker.Options{}, err
	}
	o := docker.Options{Image: ro.Image, Images: ro.Images}
	if len(images) == 0 {
		if o.Images, err = buildImages(cmd, pr, publish.Engine, "", builder.Backend(backend)); err != nil {
			return o, err
		}
	}
	return o, nil
}

// runDocker is kiln run --target docker: build, run until Ctrl-C, remove.
func runDocker(cmd *cobra.Command, args []string, port int, backend string) error {
	pr, err := loadProject(cmd, args, "", true)
	if err != nil {
		return err
	}
	defer pr.close()
	o, err := dockerImages(cmd, pr, nil, backend)
	if err != nil {
		return err
	}
	o.Port = port
	o.Output = cmd.ErrOrStderr()
	return pr.fieldError(docker.Run(cmd.Context(), pr.app, o, cmd.OutOrStdout()))
}

// deployDocker is kiln deploy --target docker: apply and return, leaving
// the topology running.
func deployDocker(cmd *cobra.Command, pr *project, images []string, backend string) error {
	o, err := dockerImages(cmd, pr, images, backend)
	if err != nil {
		return err
	}
	plan, err := docker.Render(pr.app, o)
	if err != nil {
		return pr.fieldError(err)
	}
	e, err := docker.Connect(cmd.Context())
	if err != nil {
		return err
	}
	defer e.Close()
	eps, err := e.Apply(cmd.Context(), plan)
	if err != nil {
		return err
	}
	for _, ep := range eps {
		fmt.Fprintf(cmd.OutOrStdout(), "kiln: %s serving at %s\n", ep.Service, ep.URL)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "kiln: %s runs on the Docker engine; kiln down --target docker --app %s removes it\n", pr.app.Name, pr.app.Name)
	return nil
}

// downDocker is kiln down --target docker.
func downDocker(cmd *cobra.Command, app string, deleteData bool) error {
	e, err := docker.Connect(cmd.Context())
	if err != nil {
		return err
	}
	defer e.Close()
	removed, err := e.Down(cmd.Context(), app)
	if err != nil {
		return err
	}
	if deleteData {
		data, err := e.DeleteData(cmd.Context(), app)
		removed = append(removed, data...)
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "kiln: %s is down (%d objects removed)\n", app, len(removed))
	return nil
}
