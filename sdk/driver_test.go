//go:build !kiln_image

package sdk

import "testing"

func TestDriverFlagsComeFromTheCommandLineElseTheEnvironment(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		env       map[string]string
		port      int
		dashboard int
		off       bool
		err       string
	}{
		{args: nil},
		{args: []string{"--port", "8080"}, port: 8080},
		{args: []string{"-port=8081", "--dashboard-port=9000"}, port: 8081, dashboard: 9000},
		{args: []string{"--dashboard-port", "9001", "--port", "8082"}, port: 8082, dashboard: 9001},
		{env: map[string]string{EnvPort: "8083", EnvDashboardPort: "9002"}, port: 8083, dashboard: 9002},
		{args: []string{"--dashboard-port", "9003"}, env: map[string]string{EnvDashboardPort: "9002"}, dashboard: 9003},
		{args: []string{"--no-dashboard"}, off: true},
		{env: map[string]string{EnvNoDashboard: "1"}, off: true},
		{env: map[string]string{EnvNoDashboard: "0"}},
		{args: []string{"--dashboard-port", "99999"}, err: `--dashboard-port "99999": want a port number in 1–65535`},
		{env: map[string]string{EnvDashboardPort: "x"}, err: `KILN_DASHBOARD_PORT "x": want a port number in 1–65535`},
	} {
		for _, k := range []string{EnvPort, EnvDashboardPort, EnvNoDashboard} {
			t.Setenv(k, tc.env[k])
		}
		port, err := portFlag(tc.args, "port", EnvPort)
		if err != nil {
			t.Fatalf("portFlag(%q, port) = %v", tc.args, err)
		}
		dashboard, err := portFlag(tc.args, "dashboard-port", EnvDashboardPort)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("portFlag(%q, dashboard-port) with %v = %v, want %q", tc.args, tc.env, err, tc.err)
			}
			continue
		}
		off := boolFlag(tc.args, "no-dashboard", EnvNoDashboard)
		if err != nil || port != tc.port || dashboard != tc.dashboard || off != tc.off {
			t.Errorf("flags(%q) with %v = port %d, dashboard %d, off %v, %v; want %d, %d, %v", tc.args, tc.env, port, dashboard, off, err, tc.port, tc.dashboard, tc.off)
		}
	}
}
