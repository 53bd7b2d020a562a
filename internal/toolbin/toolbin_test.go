package toolbin

import (
	"os"
	"path/filepath"
	"testing"
)

func TestToolsHashFollowsSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module x\n")
	write("go.sum", "")
	write("cmd/a/main.go", "package main\n")
	h1, err := toolsHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	write("cmd/a/main.go", "package main\n// changed\n")
	h2, _ := toolsHash(dir)
	write("README", "not a source")
	h3, _ := toolsHash(dir)
	if h1 == h2 || h2 != h3 {
		t.Fatalf("hashes %s %s %s: a source change must change it, a README must not", h1, h2, h3)
	}
}

func TestToolsDirFound(t *testing.T) {
	dir, err := ToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatal(err)
	}
}
