package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The configuration file is YAML with one section per command, nested as the
// commands are, and the global flags at the top level:
//
//	log-level: info
//	sim:
//	  listen: 127.0.0.1:9443
//	  host: [127.0.0.1, localhost]
//	keys:
//	  init:
//	    dir: /var/lib/mdtap/keys
//
// Keys are flag names. A command may also read structured sections that are
// not flags (it names them in its extraConfigKeys annotation); those it
// decodes itself with section().
type configFile struct {
	path string
	root *yaml.Node // the top-level mapping
}

// annotationExtraKeys lists, comma-separated, the non-flag keys a command's
// configuration section may hold.
const annotationExtraKeys = "mdtap.config.extra"

func loadConfig(path string, root *cobra.Command) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg := &configFile{path: path}
	if len(doc.Content) == 0 { // an empty file configures nothing
		cfg.root = &yaml.Node{Kind: yaml.MappingNode}
		return cfg, nil
	}
	cfg.root = doc.Content[0]
	if cfg.root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config %s: the top level must be a mapping of command sections", path)
	}
	if err := cfg.check(root, cfg.root, root.PersistentFlags()); err != nil {
		return nil, err
	}
	return cfg, nil
}

// check rejects keys that are neither a flag nor a subcommand nor a declared
// extra key, so a misspelt setting fails loudly instead of being ignored.
func (c *configFile) check(cmd *cobra.Command, m *yaml.Node, flags *pflag.FlagSet) error {
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: line %d: section %q must be a mapping", c.path, m.Line, sectionName(cmd))
	}
	extra := map[string]bool{}
	for _, k := range strings.Split(cmd.Annotations[annotationExtraKeys], ",") {
		if k != "" {
			extra[k] = true
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i], m.Content[i+1]
		if sub := findSub(cmd, key.Value); sub != nil {
			if err := c.check(sub, val, sub.LocalNonPersistentFlags()); err != nil {
				return err
			}
			continue
		}
		if f := flags.Lookup(key.Value); f != nil && key.Value != "config" && key.Value != "help" {
			continue
		}
		if extra[key.Value] {
			continue
		}
		return fmt.Errorf("config %s: line %d: unknown key %q in section %q", c.path, key.Line, key.Value, sectionName(cmd))
	}
	return nil
}

func findSub(cmd *cobra.Command, name string) *cobra.Command {
	for _, sub := range cmd.Commands() {
		if sub.Name() == name {
			return sub
		}
	}
	return nil
}

func sectionName(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return "(top level)"
	}
	return strings.Join(commandWords(cmd), ".")
}

// commandWords is a command's path without the binary's name: [keys init].
func commandWords(cmd *cobra.Command) []string {
	var words []string
	for c := cmd; c.HasParent(); c = c.Parent() {
		words = append([]string{c.Name()}, words...)
	}
	return words
}

// section returns the mapping node for cmd, or nil.
func (c *configFile) section(cmd *cobra.Command) *yaml.Node {
	if c == nil {
		return nil
	}
	n := c.root
	for _, w := range commandWords(cmd) {
		n = mapValue(n, w)
		if n == nil {
			return nil
		}
	}
	return n
}

// decodeExtra decodes a command's structured (non-flag) section key into v.
// It reports false when the file has no such key.
func (c *configFile) decodeExtra(cmd *cobra.Command, key string, v any) (bool, error) {
	n := mapValue(c.section(cmd), key)
	if n == nil {
		return false, nil
	}
	if err := n.Decode(v); err != nil {
		return true, fmt.Errorf("config %s: %s.%s: %w", c.path, sectionName(cmd), key, err)
	}
	return true, nil
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// envName is the environment variable of a flag: MDTAP_<COMMAND>_<FLAG>, or
// MDTAP_<FLAG> for the global flags.
func envName(cmd *cobra.Command, flag string) string {
	words := []string{"MDTAP"}
	if cmd.Root().PersistentFlags().Lookup(flag) == nil {
		words = append(words, commandWords(cmd)...)
	}
	words = append(words, flag)
	name := strings.ToUpper(strings.Join(words, "_"))
	return strings.ReplaceAll(name, "-", "_")
}

// applyLayers fills every flag of cmd that the command line left unset, from
// the environment first and the configuration file second.
func applyLayers(cmd *cobra.Command, cfg *configFile, lookupEnv func(string) (string, bool)) error {
	root := cmd.Root()
	var errs []error
	set := func(owner *cobra.Command, f *pflag.Flag) {
		if f.Changed || f.Name == "help" || f.Name == "config" {
			return
		}
		env := envName(owner, f.Name)
		if v, ok := lookupEnv(env); ok {
			if err := setFlag(f, splitList(v), true); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %w", env, err))
			}
			return
		}
		section := cfg.section(owner)
		if owner == root && cfg != nil {
			section = cfg.root
		}
		n := mapValue(section, f.Name)
		if n == nil {
			return
		}
		vals, err := nodeValues(n)
		if err == nil {
			err = setFlag(f, vals, false)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("config %s: line %d: %s: %w", cfg.path, n.Line, f.Name, err))
		}
	}
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) { set(root, f) })
	if cmd != root {
		cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) { set(cmd, f) })
	}
	return errors.Join(errs...)
}

// setFlag sets a flag from one or more values; only list flags take several.
// An environment value is one string, which a list flag splits at commas.
func setFlag(f *pflag.Flag, vals []string, fromEnv bool) error {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		if err := sv.Replace(vals); err != nil {
			return err
		}
		f.Changed = true
		return nil
	}
	v := strings.Join(vals, ",")
	if !fromEnv && len(vals) != 1 {
		return fmt.Errorf("takes one value, not a list")
	}
	if err := f.Value.Set(v); err != nil {
		return err
	}
	f.Changed = true
	return nil
}

func splitList(v string) []string {
	parts := strings.Split(v, ",")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return []string{""}
	}
	return out
}

func nodeValues(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		vals := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("list items must be plain values")
			}
			vals = append(vals, item.Value)
		}
		return vals, nil
	}
	return nil, fmt.Errorf("want a value or a list of values")
}
