package local

import (
	"fmt"
	"os"
	"path/filepath"
)

// EnvStateDir moves an app's state directory for go run and kiln run.
const EnvStateDir = "KILN_STATE_DIR"

// StateDir is where an app keeps what outlives its runs on this machine
// when Options.StateDir is unset: kiln/apps/APP under the user's cache
// directory, or under the working directory when there is none.
func StateDir(app string) string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = ".kiln"
	} else {
		base = filepath.Join(base, "kiln")
	}
	return filepath.Join(base, "apps", app)
}

func (o *Options) stateDir(app string) (string, error) {
	dir := o.StateDir
	if dir == "" {
		dir = StateDir(app)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("local: the app's state directory: %w (move it with Options.StateDir, or --state-dir)", err)
	}
	return dir, nil
}

// DataDir is the directory of instance (such as "shard-2") of service's
// storage under an app's state directory.
func DataDir(state, service, instance string) string {
	return filepath.Join(state, "data", service, instance)
}

// dataDir makes p's storage directory, readable by this user alone, and
// returns its absolute path: instance i of a service always gets the same
// one, across restarts and runs.
func (d *Deployment) dataDir(app string, p *proc) (string, error) {
	state, err := d.opts.stateDir(app)
	if err != nil {
		return "", err
	}
	dir, err := filepath.Abs(DataDir(state, p.workload.Service, p.workload.Instance(p.index)))
	if err != nil {
		return "", fmt.Errorf("local: %w", err)
	}
	for _, d := range []string{filepath.Dir(filepath.Dir(dir)), filepath.Dir(dir), dir} {
		if err := os.Mkdir(d, 0o700); err != nil && !os.IsExist(err) {
			return "", fmt.Errorf("local: storage of %s: %w", p.name, err)
		}
	}
	return dir, nil
}
