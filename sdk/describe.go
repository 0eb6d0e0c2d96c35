package sdk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kiln-dev/kiln/patterns"
	"github.com/kiln-dev/kiln/spec"
)

// Describe asks a program built with this SDK for its spec, by running it
// with KILN_ROLE=describe.
func Describe(ctx context.Context, binary string) (*spec.App, error) {
	cmd := exec.CommandContext(ctx, binary)
	cmd.Env = append(os.Environ(), patterns.EnvRole+"="+string(patterns.RoleDescribe))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("describing %s: %w\n%s\n(does its main call sdk.Run?)", binary, err, strings.TrimSpace(stderr.String()))
	}
	app, err := spec.Parse(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("describing %s: it printed no kiln spec (does its main call sdk.Run?): %w", binary, err)
	}
	return app, nil
}
