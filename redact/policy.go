package redact

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Action is what a rule does to the values it selects.
type Action string

const (
	ActionDrop     Action = "drop"     // nothing survives
	ActionMask     Action = "mask"     // irreversible partial view
	ActionEncrypt  Action = "encrypt"  // AEAD, bound to record and path
	ActionTokenize Action = "tokenize" // deterministic AEAD, bound to the field's name
	ActionHash     Action = "hash"     // PRF, irreversible
	ActionKeep     Action = "keep"     // clear text
)

func (a Action) valid() bool {
	switch a {
	case ActionDrop, ActionMask, ActionEncrypt, ActionTokenize, ActionHash, ActionKeep:
		return true
	}
	return false
}

// Rule is one policy rule as written in YAML. Exactly one selector is set:
//
//	path:   a JSON body path from the body's root with [*] for any array
//	        index (account_list[*].account_num), or **.NAME for a field of
//	        that name anywhere — in JSON bodies, form bodies, the URL query
//	        and path parameters. NAME may hold * as a glob (**.*_amt).
//	header: a header name, case-insensitive.
//	query:  a URL query parameter.
//	form:   a form-body field.
//
// api narrows a rule to one API template (/v1/bank/accounts).
type Rule struct {
	Path   string `yaml:"path,omitempty" json:"path,omitempty"`
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	Query  string `yaml:"query,omitempty" json:"query,omitempty"`
	Form   string `yaml:"form,omitempty" json:"form,omitempty"`
	API    string `yaml:"api,omitempty" json:"api,omitempty"`
	Action Action `yaml:"action" json:"action"`

	// KeepFirst and KeepLast shape mask: how many leading and trailing
	// characters stay visible (default 0 and 4). A value no longer than
	// their sum is masked whole.
	KeepFirst *int `yaml:"keep_first,omitempty" json:"keep_first,omitempty"`
	KeepLast  *int `yaml:"keep_last,omitempty" json:"keep_last,omitempty"`
	// Domain separates hash inputs: values hashed under different domains
	// never collide, values under one domain link. Default: the field name.
	Domain string `yaml:"domain,omitempty" json:"domain,omitempty"`
	// StripScheme hashes only the credentials of an Authorization-style
	// value ("Bearer X" hashes X), so a header links with the token
	// response that issued X.
	StripScheme bool `yaml:"strip_scheme,omitempty" json:"strip_scheme,omitempty"`
}

// File is a policy file.
type File struct {
	Version int `yaml:"version"`
	// Name names the policy in records (policy: NAME@digest).
	Name string `yaml:"name,omitempty"`
	// Extends layers this file over a built-in profile (builtin or strict);
	// without it the file replaces the built-in policy.
	Extends string `yaml:"extends,omitempty"`
	Rules   []Rule `yaml:"rules"`
}

//go:embed policies/*.yaml
var builtinFS embed.FS

// Built-in profile names.
const (
	ProfileBuiltin = "builtin"
	ProfileStrict  = "strict"
)

// BuiltinText returns the YAML of a built-in profile.
func BuiltinText(profile string) ([]byte, error) {
	switch profile {
	case ProfileBuiltin, ProfileStrict:
		return builtinFS.ReadFile("policies/" + profile + ".yaml")
	}
	return nil, fmt.Errorf("policy: no built-in profile %q; have builtin and strict", profile)
}

// Load returns the policy named by spec: "" or "builtin" for the built-in
// MyData policy, "strict" for its strict profile, anything else a file path.
func Load(spec string) (*Policy, error) {
	switch spec {
	case "", ProfileBuiltin:
		return loadProfile(ProfileBuiltin)
	case ProfileStrict:
		return loadProfile(ProfileStrict)
	}
	b, err := os.ReadFile(spec)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(b, "file:"+filepath.Base(spec))
}

func loadProfile(profile string) (*Policy, error) {
	b, err := BuiltinText(profile)
	if err != nil {
		return nil, err
	}
	return Parse(b, profile)
}

// Parse parses and compiles a policy file. defaultName names the policy when
// the file does not.
func Parse(text []byte, defaultName string) (*Policy, error) {
	f, err := decodeFile(text)
	if err != nil {
		return nil, err
	}
	var layers []*File
	seen := map[string]bool{}
	for cur := f; ; {
		layers = append([]*File{cur}, layers...)
		if cur.Extends == "" {
			break
		}
		if seen[cur.Extends] {
			return nil, fmt.Errorf("policy: extends %q forms a cycle", cur.Extends)
		}
		seen[cur.Extends] = true
		base, err := BuiltinText(cur.Extends)
		if err != nil {
			return nil, fmt.Errorf("policy: extends: %w", err)
		}
		if cur, err = decodeFile(base); err != nil {
			return nil, fmt.Errorf("policy: built-in %s: %w", f.Extends, err)
		}
	}
	name := f.Name
	if name == "" {
		name = defaultName
	}
	var rules []Rule
	for _, l := range layers {
		rules = append(rules, l.Rules...)
	}
	p, err := compile(rules)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	for _, l := range layers {
		b, _ := yaml.Marshal(l.Rules)
		sum.Write(b)
	}
	p.ID = name + "@" + hex.EncodeToString(sum.Sum(nil))[:8]
	return p, nil
}

func decodeFile(text []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("policy: empty file")
		}
		return nil, fmt.Errorf("policy: %w", err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("policy: version %d: want version: 1", f.Version)
	}
	return &f, nil
}

// validate checks one rule and says which, by number and selector.
func (r *Rule) validate(i int) error {
	where := fmt.Sprintf("policy: rule %d", i+1)
	set := 0
	for _, s := range []string{r.Path, r.Header, r.Query, r.Form} {
		if s != "" {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("%s: want exactly one of path, header, query, form", where)
	}
	if !r.Action.valid() {
		return fmt.Errorf("%s (%s): action %q: want drop, mask, encrypt, tokenize, hash or keep", where, r.selector(), r.Action)
	}
	if (r.KeepFirst != nil || r.KeepLast != nil) && r.Action != ActionMask {
		return fmt.Errorf("%s (%s): keep_first and keep_last apply to mask only", where, r.selector())
	}
	if (r.KeepFirst != nil && *r.KeepFirst < 0) || (r.KeepLast != nil && *r.KeepLast < 0) {
		return fmt.Errorf("%s (%s): keep_first and keep_last must not be negative", where, r.selector())
	}
	if (r.Domain != "" || r.StripScheme) && r.Action != ActionHash {
		return fmt.Errorf("%s (%s): domain and strip_scheme apply to hash only", where, r.selector())
	}
	if r.API != "" && !strings.HasPrefix(r.API, "/") {
		return fmt.Errorf("%s (%s): api %q: want a path template like /v1/bank/accounts", where, r.selector(), r.API)
	}
	if r.Path != "" {
		if err := checkPath(r.Path); err != nil {
			return fmt.Errorf("%s (path %s): %w", where, r.Path, err)
		}
	}
	return nil
}

func (r *Rule) selector() string {
	switch {
	case r.Path != "":
		return "path " + r.Path
	case r.Header != "":
		return "header " + r.Header
	case r.Query != "":
		return "query " + r.Query
	}
	return "form " + r.Form
}

// checkPath accepts **.NAME (NAME may glob with *) and member paths with [*].
func checkPath(p string) error {
	if name, ok := strings.CutPrefix(p, "**."); ok {
		if name == "" || strings.ContainsAny(name, ".[]") {
			return errors.New("**. must be followed by one field name")
		}
		if _, err := path.Match(name, ""); err != nil {
			return fmt.Errorf("bad glob: %w", err)
		}
		return nil
	}
	if strings.Contains(p, "*") && strings.ReplaceAll(p, "[*]", "") != strings.ReplaceAll(p, "*", "") {
		return errors.New("* is allowed only as [*] for array indexes, or in **.NAME")
	}
	if strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
		return errors.New("empty member name")
	}
	for _, part := range strings.Split(strings.ReplaceAll(p, "[*]", ""), ".") {
		if strings.ContainsAny(part, "[]") {
			return errors.New("array indexes must be [*]")
		}
	}
	return nil
}
