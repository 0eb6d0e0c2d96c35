package vminit

import (
	"slices"
	"strings"
	"testing"
)

func TestEnvEncodingKeepsEveryValueWhole(t *testing.T) {
	env := map[string]string{
		"KILN_PEERS":    "http://a:1,http://b:2",
		"KILN_SERVICES": "api=http://api:8080 kv=http://kv:8080",
		"GODEBUG":       "schedtrace=2147483647,http2client=0",
		"ODD":           "100% \"quoted\"\ttab\nline,X=Y é",
		"EMPTY":         "",
	}
	s := EncodeEnv(env)
	if strings.ContainsAny(s, " \t\n\"") {
		t.Fatalf("%q is not one word of a kernel command line", s)
	}
	got, err := DecodeEnv(s)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, k := range []string{"EMPTY", "GODEBUG", "KILN_PEERS", "KILN_SERVICES", "ODD"} {
		want = append(want, k+"="+env[k])
	}
	if !slices.Equal(got, want) {
		t.Errorf("decoded %q\nwant %q", got, want)
	}
}

func TestDecodeEnv(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "", want: nil},
		{in: "A=1,B=2", want: []string{"A=1", "B=2"}},
		// Written by hand: a comma in a value, unescaped, continues it.
		{in: "KILN_PEERS=http://a:1,http://b:2,KILN_ROLE=router", want: []string{"KILN_PEERS=http://a:1,http://b:2", "KILN_ROLE=router"}},
		{in: "A=x%2Cy%25", want: []string{"A=x,y%"}},
		{in: "novalue", err: `kiln.env: "novalue" is not KEY=VALUE`},
		{in: "=1", err: `kiln.env: "=1" is not KEY=VALUE`},
		{in: "A=100%", err: `kiln.env: "A=100%": a % must begin %XX, two hex digits (%25 for a percent sign itself)`},
	} {
		got, err := DecodeEnv(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("DecodeEnv(%q) = %q, %v; want the error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("DecodeEnv(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
