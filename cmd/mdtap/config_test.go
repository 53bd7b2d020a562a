package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// probe is a command whose flags cover every kind the layering must handle.
type probe struct {
	listen string
	hosts  []string
	size   byteSize
	wait   time.Duration
	flag   bool
	nested string
}

func probeRoot(a *app, p *probe) *cobra.Command {
	root := newRoot(a)
	cmd := &cobra.Command{Use: "probe", RunE: func(*cobra.Command, []string) error { return nil }}
	cmd.Flags().StringVar(&p.listen, "listen", "127.0.0.1:1", "")
	cmd.Flags().StringSliceVar(&p.hosts, "allow-host", []string{"default.example"}, "")
	p.size = 256 << 10
	cmd.Flags().Var(&p.size, "max-capture-bytes", "")
	cmd.Flags().DurationVar(&p.wait, "wait", time.Second, "")
	cmd.Flags().BoolVar(&p.flag, "create-stream", true, "")
	group := &cobra.Command{Use: "group"}
	sub := &cobra.Command{Use: "sub", RunE: func(*cobra.Command, []string) error { return nil }}
	sub.Flags().StringVar(&p.nested, "dir", "", "")
	group.AddCommand(sub)
	root.AddCommand(cmd, group)
	return root
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mdtap.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const probeConfig = `
log-level: warn
probe:
  listen: 127.0.0.1:3
  allow-host: [file-a.example, file-b.example]
  max-capture-bytes: 64MiB
  wait: 168h
  create-stream: false
group:
  sub:
    dir: /from/file
`

func TestConfigLayers(t *testing.T) {
	cfg := writeConfig(t, probeConfig)
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want probe
	}{
		{"defaults", []string{"probe"}, nil,
			probe{listen: "127.0.0.1:1", hosts: []string{"default.example"}, size: 256 << 10, wait: time.Second, flag: true}},
		{"file", []string{"--config", cfg, "probe"}, nil,
			probe{listen: "127.0.0.1:3", hosts: []string{"file-a.example", "file-b.example"}, size: 64 << 20, wait: 168 * time.Hour}},
		{"file from env", []string{"probe"}, map[string]string{"MDTAP_CONFIG": cfg},
			probe{listen: "127.0.0.1:3", hosts: []string{"file-a.example", "file-b.example"}, size: 64 << 20, wait: 168 * time.Hour}},
		{"env over file", []string{"--config", cfg, "probe"}, map[string]string{
			"MDTAP_PROBE_LISTEN": "127.0.0.1:2", "MDTAP_PROBE_ALLOW_HOST": "env-a.example, env-b.example",
			"MDTAP_PROBE_MAX_CAPTURE_BYTES": "1KiB", "MDTAP_PROBE_WAIT": "90s", "MDTAP_PROBE_CREATE_STREAM": "true"},
			probe{listen: "127.0.0.1:2", hosts: []string{"env-a.example", "env-b.example"}, size: 1024, wait: 90 * time.Second, flag: true}},
		{"flags over env", []string{"--config", cfg, "probe", "--listen", "127.0.0.1:4", "--allow-host", "x.example",
			"--allow-host", "y.example", "--max-capture-bytes", "2048", "--wait=1m", "--create-stream=false"},
			map[string]string{"MDTAP_PROBE_LISTEN": "127.0.0.1:2", "MDTAP_PROBE_ALLOW_HOST": "env.example", "MDTAP_PROBE_MAX_CAPTURE_BYTES": "1KiB"},
			probe{listen: "127.0.0.1:4", hosts: []string{"x.example", "y.example"}, size: 2048, wait: time.Minute}},
		{"nested command", []string{"--config", cfg, "group", "sub"}, nil,
			probe{listen: "127.0.0.1:1", hosts: []string{"default.example"}, size: 256 << 10, wait: time.Second, flag: true, nested: "/from/file"}},
		{"nested command env", []string{"--config", cfg, "group", "sub"}, map[string]string{"MDTAP_GROUP_SUB_DIR": "/from/env"},
			probe{listen: "127.0.0.1:1", hosts: []string{"default.example"}, size: 256 << 10, wait: time.Second, flag: true, nested: "/from/env"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p probe
			a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
				lookupEnv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}
			root := probeRoot(a, &p)
			root.SetArgs(tc.args)
			if err := root.ExecuteContext(context.Background()); err != nil {
				t.Fatalf("execute %v: %v", tc.args, err)
			}
			if p.listen != tc.want.listen || !slices.Equal(p.hosts, tc.want.hosts) || p.size != tc.want.size ||
				p.wait != tc.want.wait || p.flag != tc.want.flag || p.nested != tc.want.nested {
				t.Fatalf("flags = %+v, want %+v", p, tc.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, config string
		env          map[string]string
		want         string
	}{
		{"unknown top-level key", "probee: {}\n", nil, `unknown key "probee" in section "(top level)"`},
		{"unknown flag key", "probe:\n  lisen: x\n", nil, `unknown key "lisen" in section "probe"`},
		{"unknown nested key", "group:\n  sub:\n    dirr: x\n", nil, `unknown key "dirr" in section "group.sub"`},
		{"list for a scalar", "probe:\n  listen: [a, b]\n", nil, "listen: takes one value"},
		{"bad size", "probe:\n  max-capture-bytes: lots\n", nil, `size "lots"`},
		{"bad duration in env", "", map[string]string{"MDTAP_PROBE_WAIT": "soon"}, "$MDTAP_PROBE_WAIT"},
		{"not a mapping", "- a\n- b\n", nil, "top level must be a mapping"},
		{"section not a mapping", "probe: 3\n", nil, `section "probe" must be a mapping`},
		{"bad yaml", "probe: [\n", nil, "config"},
		{"bad log level", "log-level: loud\n", nil, "--log-level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p probe
			a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
				lookupEnv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}
			root := probeRoot(a, &p)
			root.SetArgs([]string{"--config", writeConfig(t, tc.config), "probe"})
			err := root.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("execute = %v, want an error mentioning %q", err, tc.want)
			}
			if _, ok := err.(*usageError); !ok {
				t.Fatalf("error is %T, want *usageError", err)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]byteSize{"0": 0, "262144": 256 << 10, "256KiB": 256 << 10, "64MiB": 64 << 20, "64 MiB": 64 << 20, "1KB": 1000, "1GiB": 1 << 30} {
		var b byteSize
		if err := b.Set(in); err != nil || b != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "lots", "1.5.2MiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) succeeded, want an error", in)
		}
	}
	b := byteSize(256 << 10)
	var back byteSize
	if err := back.Set(b.String()); err != nil || back != b {
		t.Errorf("Set(String()) = %d, %v; want %d", back, err, b)
	}
}
