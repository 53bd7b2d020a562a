package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/mdtap/mdtap/proxy"
)

// FuzzLoadConfig: a configuration file is outside input. Whatever its
// bytes, loading it gives an error or a mapping of known keys, and layering
// it under every command sets each flag the file names or says why not.
// Seeds in testdata/fuzz/FuzzLoadConfig/ are the documented examples.
func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(probeConfig))
	f.Add([]byte("log-level: debug\nproxy:\n  listen: 127.0.0.1:8080\n  allow-host: [a.example, b.example]\n  hosts:\n    a.example: {org_code: TESTBK0001}\n"))
	f.Add([]byte("keys:\n  init:\n    dir: /tmp/keys\n"))
	f.Add([]byte("sim: &a {listen: x}\nproxy: *a\n"))
	path := filepath.Join(f.TempDir(), "mdtap.yaml")
	noEnv := func(string) (string, bool) { return "", false }
	f.Fuzz(func(t *testing.T, text []byte) {
		if err := os.WriteFile(path, text, 0o600); err != nil {
			t.Fatal(err)
		}
		a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, lookupEnv: noEnv}
		root := newRoot(a)
		cfg, err := loadConfig(path, root)
		if err != nil {
			return
		}
		if cfg.root == nil || cfg.root.Kind != yaml.MappingNode {
			t.Fatalf("accepted a file whose top level is not a mapping")
		}
		var visit func(cmd *cobra.Command)
		visit = func(cmd *cobra.Command) {
			flags, section := cmd.LocalNonPersistentFlags(), cfg.section(cmd)
			if cmd == root {
				flags, section = root.PersistentFlags(), cfg.root
			}
			if err := applyLayers(cmd, cfg, noEnv); err == nil {
				flags.VisitAll(func(fl *pflag.Flag) {
					if mapValue(section, fl.Name) != nil && !fl.Changed {
						t.Fatalf("%s --%s: in the file, applied without error, but not set", sectionName(cmd), fl.Name)
					}
				})
			}
			for _, sub := range cmd.Commands() {
				visit(sub)
			}
		}
		visit(root)
		if cmd := findSub(root, "proxy"); cmd != nil {
			var hosts map[string]proxy.HostConfig
			_, _ = cfg.decodeExtra(cmd, "hosts", &hosts)
		}
	})
}
