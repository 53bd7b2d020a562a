package mdtap_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/mdtap/mdtap"
)

// jsonFields returns the JSON member names of a struct type and of every
// struct type it holds, by the Go type that declares them ("Record.id",
// "Payload.body_kind"). Types with their own JSON encoding (Timestamp) are
// leaves; embedded structs contribute their fields to the outer object.
func jsonFields(t reflect.Type, into map[string]string) {
	marshaler := reflect.TypeFor[json.Marshaler]()
	var walk func(t reflect.Type, owner string)
	seen := map[reflect.Type]bool{}
	walk = func(t reflect.Type, owner string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler) {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				walk(f.Type, owner) // embedded: its members are the outer object's
				continue
			}
			if name == "" {
				name = f.Name
			}
			into[owner+"."+name] = f.Type.String()
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && !seen[ft] {
				seen[ft] = true
				walk(ft, ft.Name())
			}
		}
	}
	walk(t, t.Name())
}

// schemaProperties collects every property name the JSON Schema declares,
// at any depth.
func schemaProperties(v any, into map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		if props, ok := v["properties"].(map[string]any); ok {
			for name := range props {
				into[name] = true
			}
		}
		for _, x := range v {
			schemaProperties(x, into)
		}
	case []any:
		for _, x := range v {
			schemaProperties(x, into)
		}
	}
}

// The record reference cannot drift from the Go type: every JSON member of
// mdtap.Record and the types it holds is documented in docs/record.md and
// declared in docs/record.schema.json, and the schema declares no member the
// Go type lacks.
func TestRecordDocCoversEveryField(t *testing.T) {
	doc, err := os.ReadFile("docs/record.md")
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	jsonFields(reflect.TypeFor[mdtap.Record](), fields)
	if len(fields) < 30 {
		t.Fatalf("found only %d fields: %v", len(fields), fields)
	}

	var schema any
	b, err := os.ReadFile("docs/record.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	schemaProperties(schema, declared)

	names := map[string]bool{}
	for key := range fields {
		_, name, _ := strings.Cut(key, ".")
		names[name] = true
		// A table row or inline mention in backticks, or a JSON member in an example.
		if !strings.Contains(string(doc), "`"+name+"`") && !strings.Contains(string(doc), `"`+name+`"`) {
			t.Errorf("docs/record.md does not document %s (%s)", key, fields[key])
		}
		if !declared[name] {
			t.Errorf("docs/record.schema.json does not declare %s", key)
		}
	}
	var extra []string
	for name := range declared {
		if !names[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("docs/record.schema.json declares members mdtap.Record does not have: %v", extra)
	}
}

// The record's vocabularies — sectors, body kinds, opaque and degraded
// reasons, transmission kinds, protected-value forms — are listed in
// docs/record.md exactly as the code spells them.
func TestRecordDocCoversVocabularies(t *testing.T) {
	doc, err := os.ReadFile("docs/record.md")
	if err != nil {
		t.Fatal(err)
	}
	var words []string
	for _, s := range mdtap.Sectors {
		words = append(words, string(s))
	}
	for _, k := range []mdtap.BodyKind{mdtap.BodyJSON, mdtap.BodyForm, mdtap.BodyOpaque} {
		words = append(words, string(k))
	}
	words = append(words,
		mdtap.OpaqueNotJSON, mdtap.OpaqueMalformed, mdtap.OpaqueTooDeep, mdtap.OpaqueInvalidUTF8,
		mdtap.OpaqueTruncated, mdtap.OpaqueDecodeLimit, mdtap.OpaqueDecodeError,
		mdtap.DegradeSpoolFull, mdtap.DegradeTooLarge, mdtap.DegradeProtectError,
		string(mdtap.Scheduled), string(mdtap.UserInitiated))
	for _, f := range []mdtap.Form{mdtap.FormDrop, mdtap.FormMask, mdtap.FormEnc, mdtap.FormBlob,
		mdtap.FormTok, mdtap.FormHash, mdtap.FormShred, mdtap.FormLit} {
		words = append(words, "mdtap:"+string(f)+":v1")
	}
	if !slices.Contains(mdtap.Sectors, mdtap.SectorUnknown) {
		words = append(words, string(mdtap.SectorUnknown))
	}
	for _, w := range words {
		if !strings.Contains(string(doc), "`"+w) {
			t.Errorf("docs/record.md does not list %q", w)
		}
	}
}

// githubAnchor is the anchor GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the heading anchors of a Markdown file.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if !inFence && strings.HasPrefix(line, "#") {
			out[githubAnchor(strings.TrimLeft(line, "#"))] = true
		}
	}
	return out
}

// The guides and references link to files and headings that exist.
func TestDocLinksResolve(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, doc := range []string{"docs/operator.md", "docs/compliance.md", "docs/record.md", "docs/policy.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s: %v", doc, target, err)
				continue
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchors(t, path)[anchor] {
				t.Errorf("%s links to %s: no such heading in %s", doc, target, path)
			}
		}
	}
}
