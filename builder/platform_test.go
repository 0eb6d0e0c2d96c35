package builder

import (
	"slices"
	"strings"
	"testing"
)

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []Platform
		wantErr string
	}{
		{"", []Platform{HostPlatform()}, ""},
		{"linux/amd64", []Platform{{"linux", "amd64", ""}}, ""},
		{"linux/amd64, linux/arm64", []Platform{{"linux", "amd64", ""}, {"linux", "arm64", ""}}, ""},
		{"linux/arm", []Platform{{"linux", "arm", "v7"}}, ""},
		{"linux/arm/v6", []Platform{{"linux", "arm", "v6"}}, ""},
		{"linux/amd64/v3", []Platform{{"linux", "amd64", "v3"}}, ""},
		{"windows/amd64", nil, "unsupported platform windows/amd64: kiln builds Linux images"},
		{"darwin/arm64", nil, "the OS must be linux"},
		{"linux/sparc", nil, "unsupported platform linux/sparc: Go cannot build linux/sparc"},
		{"linux/arm/v9", nil, `linux/arm has no variant "v9"`},
		{"linux/386/v2", nil, `linux/386 has no variant "v2"`},
		{"amd64", nil, "want os/arch[/variant]"},
		{"linux/amd64,linux/amd64", nil, "listed twice"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePlatforms(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestGoEnv(t *testing.T) {
	for _, tc := range []struct {
		p    Platform
		want string
	}{
		{Platform{"linux", "amd64", ""}, "GOOS=linux GOARCH=amd64"},
		{Platform{"linux", "arm", "v6"}, "GOOS=linux GOARCH=arm GOARM=6"},
		{Platform{"linux", "amd64", "v3"}, "GOOS=linux GOARCH=amd64 GOAMD64=v3"},
		{Platform{"linux", "arm64", "v8"}, "GOOS=linux GOARCH=arm64 GOARM64=v8.0"},
	} {
		if got := strings.Join(tc.p.goEnv(), " "); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.p, got, tc.want)
		}
	}
}
