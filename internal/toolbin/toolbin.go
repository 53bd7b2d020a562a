// Package toolbin builds the programs pinned in the repository's separate
// tools module (tools/go.mod: versitygw, the local KMS server) for tests,
// caching the binaries between runs, so that `go test ./...` needs nothing
// installed and the main go.mod carries none of their dependencies.
package toolbin

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// mainModule is the module whose root holds tools/.
	mainModule = "github.com/mdtap/mdtap"
	// CacheEnv names the directory that caches built tools between runs;
	// unset, it is os.UserCacheDir()/mdtap-tools.
	CacheEnv = "MDTAP_TOOLS_CACHE"
)

var (
	mu    sync.Mutex
	built = map[string]string{} // package → binary path
)

// Path builds the main package pkg of the tools module, or returns the path
// of the binary already in the cache, and fails the test if it cannot.
//
// The file is named <last element of pkg>-<hash of tools/go.mod, tools/go.sum
// and the tools module's own sources>, so bumping a version or editing a
// wrapper builds anew. A file lock around the build keeps parallel test
// processes (go test runs packages concurrently) from building it twice; the
// binary is built under a temporary name and renamed into place, so nobody
// runs a half-written file. It never skips: a test that needs a tool fails
// when the tool cannot be built, on CI and off it.
func Path(t testing.TB, pkg string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	p, err := build(t, pkg)
	if err != nil {
		t.Fatalf("toolbin: %s: %v", pkg, err)
	}
	built[pkg] = p
	return p
}

func build(t testing.TB, pkg string) (string, error) {
	toolsDir, err := ToolsDir()
	if err != nil {
		return "", err
	}
	hash, err := toolsHash(toolsDir)
	if err != nil {
		return "", err
	}
	cacheDir, err := cacheDir()
	if err != nil {
		return "", err
	}
	name := path.Base(pkg)
	bin := filepath.Join(cacheDir, name+"-"+hash)
	if isExecutable(bin) {
		return bin, nil
	}
	waitStart := time.Now()
	unlock, err := lockFile(filepath.Join(cacheDir, name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(bin) { // built by another process while we waited
		if waited := time.Since(waitStart); waited > time.Second {
			t.Logf("toolbin: waited %s for another process to build %s", waited.Round(time.Millisecond), bin)
		}
		return bin, nil
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("find the go command: %w", err)
	}
	tmpDir, err := os.MkdirTemp(cacheDir, ".build-*")
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, name)
	start := time.Now()
	cmd := exec.Command(goCmd, "build", "-o", tmp, pkg)
	cmd.Dir = toolsDir
	cmd.Env = append(os.Environ(),
		"GOWORK=off",    // tools/ is its own module, whatever go.work says
		"CGO_ENABLED=0", // the tools are pure Go; no C toolchain needed
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build in %s: %w\n%s", toolsDir, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	t.Logf("toolbin: built %s in %s: %s", pkg, time.Since(start).Round(time.Millisecond), bin)
	pruneOldBuilds(cacheDir, name, bin)
	return bin, nil
}

// staleAfter is the age after which another build of the same tool is removed.
const staleAfter = 30 * 24 * time.Hour

// pruneOldBuilds keeps the cache from growing by one binary per change of
// the tools module forever. A process running a removed binary is unaffected.
func pruneOldBuilds(cacheDir, name, keep string) {
	old, _ := filepath.Glob(filepath.Join(cacheDir, name+"-*"))
	for _, p := range old {
		if fi, err := os.Stat(p); err == nil && p != keep && time.Since(fi.ModTime()) > staleAfter {
			os.Remove(p)
		}
	}
}

// ToolsDir returns the tools/ directory of the mdtap module: it walks up from
// the working directory (the package dir under go test), then from this
// source file, to the go.mod of module github.com/mdtap/mdtap.
func ToolsDir() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if modulePath(filepath.Join(dir, "go.mod")) == mainModule {
				tools := filepath.Join(dir, "tools")
				if _, err := os.Stat(filepath.Join(tools, "go.mod")); err != nil {
					return "", fmt.Errorf("find tools module: %w", err)
				}
				return tools, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("find tools module: no go.mod of module %s above %q", mainModule, starts)
}

// modulePath returns the module path declared in the go.mod file, or "".
func modulePath(gomod string) string {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// toolsHash hashes tools/go.mod, tools/go.sum and every .go file of the
// tools module, so any change to what a tool is built from rebuilds it.
func toolsHash(toolsDir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(toolsDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		base := filepath.Base(p)
		if d.IsDir() || !(base == "go.mod" || base == "go.sum" || strings.HasSuffix(base, ".go")) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(toolsDir, p)
		h.Write([]byte(rel))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash tools module: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

func cacheDir() (string, error) {
	dir := os.Getenv(CacheEnv)
	if dir == "" {
		user, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("tools cache dir (set %s): %w", CacheEnv, err)
		}
		dir = filepath.Join(user, "mdtap-tools")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("tools cache dir: %w", err)
	}
	return dir, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
