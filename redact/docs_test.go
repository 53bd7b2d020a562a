package redact_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mdtap/mdtap/redact"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated part of docs/policy.md")

const (
	policyDoc        = "../docs/policy.md"
	builtinRulesOpen = "<!-- builtin-rules:begin"
	builtinRulesEnd  = "<!-- builtin-rules:end -->"
)

// actions are the actions the redact package declares, in the order the
// generated reference lists them.
var actions = []redact.Action{
	redact.ActionDrop, redact.ActionHash, redact.ActionEncrypt,
	redact.ActionTokenize, redact.ActionMask, redact.ActionKeep,
}

// yamlKeys returns the YAML keys of a struct type.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// The policy reference names every key a policy file may hold and every
// action, and each action it names is one the parser accepts.
func TestPolicyDocCoversFileFormat(t *testing.T) {
	doc, err := os.ReadFile(policyDoc)
	if err != nil {
		t.Fatal(err)
	}
	keys := append(yamlKeys(reflect.TypeFor[redact.File]()), yamlKeys(reflect.TypeFor[redact.Rule]())...)
	if len(keys) < 12 {
		t.Fatalf("found only the keys %v", keys)
	}
	for _, k := range keys {
		if !bytes.Contains(doc, []byte("`"+k+"`")) && !bytes.Contains(doc, []byte("`"+k+":")) {
			t.Errorf("docs/policy.md does not document the policy key %q", k)
		}
	}
	for _, a := range actions {
		if !bytes.Contains(doc, []byte("| `"+string(a)+"` |")) {
			t.Errorf("docs/policy.md has no row for the action %q", a)
		}
		if _, err := redact.Parse(fmt.Appendf(nil, "version: 1\nrules:\n  - {path: \"**.x\", action: %s}\n", a), "t"); err != nil {
			t.Errorf("action %q: %v", a, err)
		}
	}
	// Limits the reference states.
	for _, want := range []string{
		fmt.Sprintf("nested deeper than %d levels", redact.MaxDepth),
		"`mdtap_redact_unclassified_fields_total{field}`",
	} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("docs/policy.md does not say %q", want)
		}
	}
	// The list above is complete: the parser refuses anything else.
	if _, err := redact.Parse([]byte("version: 1\nrules:\n  - {path: \"**.x\", action: redact}\n"), "t"); err == nil {
		t.Error("the parser accepts an action the docs do not list")
	}
}

// selectorText renders a rule's selector and options for the reference.
func selectorText(r redact.Rule) string {
	var s string
	switch {
	case r.Path != "":
		s = "`" + r.Path + "`"
	case r.Header != "":
		s = "header `" + r.Header + "`"
	case r.Query != "":
		s = "query `" + r.Query + "`"
	default:
		s = "form `" + r.Form + "`"
	}
	var opts []string
	if r.API != "" {
		opts = append(opts, "on `"+r.API+"`")
	}
	if r.KeepFirst != nil {
		opts = append(opts, fmt.Sprintf("keep_first %d", *r.KeepFirst))
	}
	if r.KeepLast != nil {
		opts = append(opts, fmt.Sprintf("keep_last %d", *r.KeepLast))
	}
	if r.Domain != "" {
		opts = append(opts, "domain `"+r.Domain+"`")
	}
	if r.StripScheme {
		opts = append(opts, "strip_scheme")
	}
	if len(opts) > 0 {
		s += " (" + strings.Join(opts, ", ") + ")"
	}
	return s
}

// builtinRulesText renders every rule of the built-in profiles, by action.
func builtinRulesText(t *testing.T) string {
	var b strings.Builder
	for _, profile := range []string{redact.ProfileBuiltin, redact.ProfileStrict} {
		text, err := redact.BuiltinText(profile)
		if err != nil {
			t.Fatal(err)
		}
		var f redact.File
		if err := yaml.Unmarshal(text, &f); err != nil {
			t.Fatalf("%s: %v", profile, err)
		}
		byAction := map[redact.Action][]string{}
		for _, r := range f.Rules {
			byAction[r.Action] = append(byAction[r.Action], selectorText(r))
		}
		if f.Extends != "" {
			fmt.Fprintf(&b, "\n`%s` (`extends: %s`) changes %d rules:\n\n", profile, f.Extends, len(f.Rules))
		} else {
			fmt.Fprintf(&b, "\n`%s`, %d rules:\n\n", profile, len(f.Rules))
		}
		n := 0
		for _, a := range actions {
			if sels := byAction[a]; len(sels) > 0 {
				fmt.Fprintf(&b, "- **%s** (%d): %s\n", a, len(sels), strings.Join(sels, ", "))
				n += len(sels)
			}
		}
		if n != len(f.Rules) {
			t.Fatalf("%s: %d of %d rules have an action the reference does not list", profile, len(f.Rules)-n, len(f.Rules))
		}
	}
	b.WriteString("\n")
	return b.String()
}

// The reference lists every rule of the built-in profiles. That part of
// docs/policy.md is generated from redact/policies/*.yaml:
//
//	go test ./redact -run TestPolicyDocListsBuiltinRules -update-docs
func TestPolicyDocListsBuiltinRules(t *testing.T) {
	doc, err := os.ReadFile(policyDoc)
	if err != nil {
		t.Fatal(err)
	}
	open := bytes.Index(doc, []byte(builtinRulesOpen))
	end := bytes.Index(doc, []byte(builtinRulesEnd))
	if open < 0 || end < open {
		t.Fatalf("docs/policy.md lacks the %s … %s section", builtinRulesOpen, builtinRulesEnd)
	}
	open += bytes.IndexByte(doc[open:], '\n') + 1
	want := builtinRulesText(t)
	if string(doc[open:end]) == want {
		return
	}
	if *updateDocs {
		out := append(append(append([]byte{}, doc[:open]...), want...), doc[end:]...)
		if err := os.WriteFile(policyDoc, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the built-in rules in %s", policyDoc)
		return
	}
	t.Errorf("the built-in rules in docs/policy.md differ from redact/policies; run\n"+
		"  go test ./redact -run TestPolicyDocListsBuiltinRules -update-docs\nwant:\n%s", want)
}
