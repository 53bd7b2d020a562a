package main

// The deploy consistency tests keep deploy/ honest without Docker or a
// cluster: every file parses; every mdtap command line in compose.yaml, the
// Kubernetes manifests, the Dockerfile and deploy/README.md is parsed by the
// real command tree, with its MDTAP_* environment and its --config file, as
// the binary would; image names and ports agree across files; and every
// metric the dashboard and the alert rules use is one docs/metrics.md
// documents. The kustomize overlay is rendered (tools/cmd/kustomize) and
// checked as well.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/internal/toolbin"
	"github.com/mdtap/mdtap/proxy"
)

const (
	deployDir   = "../../deploy"
	mdtapImage  = "ghcr.io/mdtap/mdtap"
	mdtapTag    = "dev"
	debugSuffix = "-debug" // the Dockerfile's debug target, for shell init scripts
)

// mdtapCall is one mdtap command line found in a deploy file.
type mdtapCall struct {
	where      string            // file and service or container, for messages
	args       []string          // after the binary's name
	env        map[string]string // the container's environment
	configFile string            // local file standing in for --config, if any
}

// parsedCall is a call resolved by the command tree: flags, environment and
// configuration file layered as the binary does.
type parsedCall struct {
	mdtapCall
	cmd *cobra.Command
}

func (p *parsedCall) path() string { return strings.Join(commandWords(p.cmd), " ") }

// flag is a flag's effective value.
func (p *parsedCall) flag(name string) (string, bool) {
	f := p.cmd.Flags().Lookup(name)
	if f == nil {
		return "", false
	}
	return f.Value.String(), true
}

// parseCall runs a command line through a fresh command tree up to the point
// where the command would start: unknown commands, flags, environment
// variables, configuration keys and bad values all fail here.
func parseCall(c mdtapCall) (*parsedCall, error) {
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard,
		lookupEnv: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }}
	root := newRoot(a)
	cmd, rest, err := root.Find(c.args)
	if err != nil {
		return nil, fmt.Errorf("%s: mdtap %s: %w", c.where, strings.Join(c.args, " "), err)
	}
	if !cmd.Runnable() {
		return nil, fmt.Errorf("%s: mdtap %s: %q is not a runnable command", c.where, strings.Join(c.args, " "), cmd.CommandPath())
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.where, cmd.CommandPath(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.where, cmd.CommandPath(), err)
	}
	known := map[string]bool{"MDTAP_CONFIG": true}
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) { known[envName(root, f.Name)] = true })
	cmd.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) { known[envName(cmd, f.Name)] = true })
	for k := range c.env {
		if strings.HasPrefix(k, "MDTAP_") && !known[k] {
			return nil, fmt.Errorf("%s: %s: environment variable %s names no flag", c.where, cmd.CommandPath(), k)
		}
	}
	usesConfig := root.PersistentFlags().Changed("config") || c.env["MDTAP_CONFIG"] != ""
	if usesConfig && c.configFile == "" {
		return nil, fmt.Errorf("%s: %s: --config %s is not resolved to a file in deploy/", c.where, cmd.CommandPath(), a.configPath)
	}
	if c.configFile != "" {
		a.configPath = c.configFile
		root.PersistentFlags().Lookup("config").Changed = true
	}
	if err := a.setup(cmd); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", c.where, cmd.CommandPath(), err)
	}
	if cmd.Name() == "proxy" && a.config != nil {
		var hosts map[string]proxy.HostConfig
		if _, err := a.config.decodeExtra(cmd, "hosts", &hosts); err != nil {
			return nil, fmt.Errorf("%s: %w", c.where, err)
		}
	}
	return &parsedCall{mdtapCall: c, cmd: cmd}, nil
}

// --- reading deploy/ ---

type deployFile struct {
	rel  string // relative to deploy/
	docs []any  // YAML documents, or the one JSON value
}

// readDeploy parses every YAML and JSON file under deploy/.
func readDeploy(t *testing.T) map[string]*deployFile {
	t.Helper()
	files := map[string]*deployFile{}
	err := filepath.WalkDir(deployDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(deployDir, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			docs, err := decodeYAMLDocs(b)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			files[rel] = &deployFile{rel: rel, docs: docs}
		case ".json":
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			files[rel] = &deployFile{rel: rel, docs: []any{v}}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read deploy/: %v", err)
	}
	return files
}

func decodeYAMLDocs(b []byte) ([]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if v != nil {
			docs = append(docs, v)
		}
	}
}

// Small accessors over decoded YAML (map[string]any, []any, scalars).
func mget(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func mstr(v any, keys ...string) string {
	switch s := mget(v, keys...).(type) {
	case string:
		return s
	case int:
		return strconv.Itoa(s)
	case bool:
		return strconv.FormatBool(s)
	}
	return ""
}

func mlist(v any, keys ...string) []any {
	l, _ := mget(v, keys...).([]any)
	return l
}

func strs(l []any) []string {
	out := make([]string, 0, len(l))
	for _, v := range l {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

// --- shell scripts: the mdtap command lines in them ---

var binaryWord = regexp.MustCompile(`^(\S*/)?mdtap$`)

// shellCalls finds mdtap command lines in a shell script (or a README code
// block): each word `mdtap`, `/mdtap`, `./cmd/mdtap` or the mdtap image (as
// in `docker run IMAGE version`) followed by arguments starts one, up to the
// end of its simple command.
func shellCalls(script string) [][]string {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var calls [][]string
	for _, line := range strings.Split(script, "\n") {
		words := shellWords(line)
		for i := 0; i < len(words); i++ {
			if !binaryWord.MatchString(words[i]) && !isMdtapImage(words[i]) ||
				i > 0 && (words[i-1] == "-t" || words[i-1] == "--tag") { // docker build -t IMAGE
				continue
			}
			var args []string
			for _, w := range words[i+1:] {
				if w == "&&" || w == "||" || w == ";" || w == "|" || w == "&" || strings.HasPrefix(w, ">") || strings.HasPrefix(w, "2>") || strings.HasPrefix(w, "<") {
					break
				}
				args = append(args, w)
			}
			if len(args) > 0 { // else an argument, as in `deploy/build.sh /out/mdtap`
				calls = append(calls, args)
			}
			i += len(args)
		}
	}
	return calls
}

// shellWords splits a line as a POSIX shell would for plain words and
// quotes; enough for the scripts in deploy/ (no expansions are evaluated).
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	quote := byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '#' && !inWord:
			i = len(line)
		case c == ';' || c == '|' || c == '&':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
			op := string(c)
			if i+1 < len(line) && line[i+1] == c && c != ';' {
				op += string(c)
				i++
			}
			words = append(words, op)
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// --- compose ---

type composeService struct {
	name     string
	image    string
	raw      any
	calls    []*parsedCall
	script   string            // the service's shell script, if it runs one
	env      map[string]string // environment
	expose   map[int]bool      // ports other containers may use
	commands string            // the command line, for non-mdtap services
}

func isMdtapImage(image string) bool {
	return image == mdtapImage || strings.HasPrefix(image, mdtapImage+":") || strings.HasPrefix(image, mdtapImage+"@")
}

func composeServices(t *testing.T, files map[string]*deployFile) (map[string]*composeService, []error) {
	t.Helper()
	f := files["compose.yaml"]
	if f == nil || len(f.docs) != 1 {
		t.Fatalf("deploy/compose.yaml: want one YAML document")
	}
	var errs []error
	services := map[string]*composeService{}
	svcs, _ := mget(f.docs[0], "services").(map[string]any)
	for name, raw := range svcs {
		s := &composeService{name: name, image: mstr(raw, "image"), raw: raw, env: map[string]string{}, expose: map[int]bool{}}
		services[name] = s
		env, _ := mget(raw, "environment").(map[string]any)
		for k, v := range env {
			s.env[k] = fmt.Sprint(v)
		}
		for _, p := range strs(mlist(raw, "expose")) {
			n, err := strconv.Atoi(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("compose %s: expose %q is not a port", name, p))
			}
			s.expose[n] = true
		}
		command := mget(raw, "command")
		var cmdWords []string
		switch c := command.(type) {
		case []any:
			cmdWords = strs(c)
		case string:
			cmdWords = shellWords(c)
		}
		entry := strs(mlist(raw, "entrypoint"))
		// Compose interpolates $$ to $ before the shell sees it.
		unescape := func(s string) string { return strings.ReplaceAll(s, "$$", "$") }
		if len(entry) > 0 && strings.HasSuffix(entry[0], "sh") {
			s.script = unescape(strings.Join(cmdWords, "\n"))
		}
		s.commands = unescape(strings.Join(append(entry, cmdWords...), " "))
		if !isMdtapImage(s.image) {
			continue
		}
		var calls [][]string
		switch {
		case len(entry) == 0:
			if len(cmdWords) > 0 {
				calls = append(calls, cmdWords)
			}
		case s.script != "":
			calls = shellCalls(s.script)
			if len(calls) == 0 {
				errs = append(errs, fmt.Errorf("compose %s: a shell entrypoint that runs no mdtap command", name))
			}
		default:
			errs = append(errs, fmt.Errorf("compose %s: entrypoint %q: use the image's (/mdtap) or a shell", name, entry))
		}
		for _, args := range calls {
			for i := range args {
				args[i] = unescape(args[i])
			}
			p, err := parseCall(mdtapCall{where: "compose " + name, args: args, env: s.env})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			s.calls = append(s.calls, p)
		}
	}
	return services, errs
}

// --- Kubernetes ---

type k8sContainer struct {
	Name          string   `yaml:"name"`
	Image         string   `yaml:"image"`
	Command       []string `yaml:"command"`
	Args          []string `yaml:"args"`
	RestartPolicy string   `yaml:"restartPolicy"`
	Env           []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]any `yaml:"requests"`
		Limits   map[string]any `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		RunAsUser                *int  `yaml:"runAsUser"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sPod struct {
	Metadata struct {
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		InitContainers []k8sContainer `yaml:"initContainers"`
		Containers     []k8sContainer `yaml:"containers"`
		Volumes        []struct {
			Name   string `yaml:"name"`
			Secret *struct {
				SecretName  string `yaml:"secretName"`
				DefaultMode *int   `yaml:"defaultMode"`
			} `yaml:"secret"`
			ConfigMap *struct {
				Name string `yaml:"name"`
			} `yaml:"configMap"`
			EmptyDir any `yaml:"emptyDir"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

type k8sObject struct {
	file     string
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template    *k8sPod `yaml:"template"`
		PodSelector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"podSelector"`
		Egress []struct {
			Ports []struct {
				Protocol string `yaml:"protocol"`
				Port     any    `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"egress"`
	} `yaml:"spec"`
	Data map[string]string `yaml:"data"`
}

func (o *k8sObject) String() string { return fmt.Sprintf("%s %s/%s", o.file, o.Kind, o.Metadata.Name) }

// k8sObjects decodes Kubernetes objects from YAML documents.
func k8sObjects(file string, docs []any) ([]*k8sObject, error) {
	var objs []*k8sObject
	for _, d := range docs {
		if mstr(d, "kind") == "" || strings.HasPrefix(mstr(d, "apiVersion"), "kustomize.config.k8s.io/") {
			continue
		}
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		o := &k8sObject{file: file}
		if err := yaml.Unmarshal(b, o); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// rawK8s reads the manifests under deploy/k8s as written: objects from the
// files kustomizations list as resources (patches are partial objects), and
// the ConfigMaps their generators make, by name, as local files.
func rawK8s(t *testing.T, files map[string]*deployFile) (objs []*k8sObject, configMaps map[string]map[string]string, patches []*deployFile) {
	t.Helper()
	configMaps = map[string]map[string]string{}
	resources := map[string]bool{}
	for rel, f := range files {
		if !strings.HasPrefix(rel, "k8s/") || filepath.Base(rel) != "kustomization.yaml" {
			continue
		}
		k, dir := f.docs[0], filepath.Dir(rel)
		for _, r := range strs(mlist(k, "resources")) {
			resources[filepath.Join(dir, r)] = true
		}
		for _, p := range mlist(k, "patches") {
			if pf := files[filepath.Join(dir, mstr(p, "path"))]; pf != nil {
				patches = append(patches, pf)
			} else {
				t.Errorf("%s: patch %s is not in deploy/", rel, mstr(p, "path"))
			}
		}
		for _, g := range mlist(k, "configMapGenerator") {
			data := map[string]string{}
			for _, file := range strs(mlist(g, "files")) {
				key, path, ok := strings.Cut(file, "=")
				if !ok {
					key, path = filepath.Base(file), file
				}
				data[key] = filepath.Join(deployDir, dir, path)
			}
			configMaps[mstr(g, "name")] = data
		}
	}
	for rel := range resources {
		f := files[rel]
		if f == nil {
			if _, err := os.Stat(filepath.Join(deployDir, rel)); err != nil {
				t.Errorf("kustomize resource %s: %v", rel, err)
			}
			continue // a directory: its kustomization is read on its own
		}
		o, err := k8sObjects(rel, f.docs)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	slices.SortFunc(objs, func(a, b *k8sObject) int { return strings.Compare(a.String(), b.String()) })
	return objs, configMaps, patches
}

// k8sCalls resolves the mdtap containers of a pod: command line, env and
// the --config file through its volume mount to a ConfigMap.
func k8sCalls(o *k8sObject, configMaps map[string]map[string]string) (map[string]*parsedCall, []error) {
	pod := o.Spec.Template
	calls := map[string]*parsedCall{}
	var errs []error
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if !isMdtapImage(c.Image) {
			continue
		}
		where := fmt.Sprintf("%s container %s", o, c.Name)
		env := map[string]string{}
		for _, e := range c.Env {
			v := e.Value
			if e.ValueFrom != nil {
				v = "from-" + e.Name // a Secret or field: any string will do
			}
			env[e.Name] = v
		}
		if len(c.Command) > 0 && c.Command[0] != "/mdtap" {
			errs = append(errs, fmt.Errorf("%s: command %q: leave it to the image's entrypoint", where, c.Command))
			continue
		}
		args := slices.Clone(c.Args)
		for i, a := range args { // Kubernetes expands $(VAR) from the container's env.
			for k, v := range env {
				args[i] = strings.ReplaceAll(a, "$("+k+")", v)
				a = args[i]
			}
		}
		call := mdtapCall{where: where, args: args, env: env}
		cfgPath := env["MDTAP_CONFIG"]
		for i, a := range args {
			if a == "--config" && i+1 < len(args) {
				cfgPath = args[i+1]
			} else if v, ok := strings.CutPrefix(a, "--config="); ok {
				cfgPath = v
			}
		}
		if cfgPath != "" {
			local, err := resolveConfigMapFile(pod, c, cfgPath, configMaps)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: --config %s: %w", where, cfgPath, err))
				continue
			}
			call.configFile = local
		}
		p, err := parseCall(call)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		calls[c.Name] = p
	}
	return calls, errs
}

func resolveConfigMapFile(pod *k8sPod, c k8sContainer, path string, configMaps map[string]map[string]string) (string, error) {
	for _, m := range c.VolumeMounts {
		key, ok := strings.CutPrefix(path, m.MountPath+"/")
		if m.SubPath != "" {
			key, ok = m.SubPath, path == m.MountPath
		}
		if !ok {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			name := v.ConfigMap.Name
			data, ok := configMaps[name]
			if !ok {
				return "", fmt.Errorf("no ConfigMap %s in deploy/", name)
			}
			file, ok := data[key]
			if !ok {
				return "", fmt.Errorf("ConfigMap %s has no key %s", name, key)
			}
			return file, nil
		}
		return "", fmt.Errorf("volume %s is not a ConfigMap", m.Name)
	}
	return "", errors.New("no volume mounted there")
}

// renderedConfigMaps writes the data of ConfigMap objects to files, for
// --config of rendered manifests.
func renderedConfigMaps(t *testing.T, objs []*k8sObject) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, o := range objs {
		if o.Kind != "ConfigMap" {
			continue
		}
		dir := t.TempDir()
		out[o.Metadata.Name] = map[string]string{}
		for k, v := range o.Data {
			p := filepath.Join(dir, k)
			if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
			out[o.Metadata.Name][k] = p
		}
	}
	return out
}

// --- the checks ---

func TestDeployFilesParse(t *testing.T) {
	files := readDeploy(t)
	var yamlDocs, jsonFiles int
	for _, f := range files {
		if strings.HasSuffix(f.rel, ".json") {
			jsonFiles++
		} else {
			yamlDocs += len(f.docs)
		}
	}
	// Not vacuous: compose, the Kubernetes base, overlay and component, the
	// alert rules and the dashboard.
	if yamlDocs < 12 || jsonFiles < 1 {
		t.Errorf("parsed %d YAML documents and %d JSON files under deploy/; want at least 12 and 1", yamlDocs, jsonFiles)
	}
	for _, name := range []string{"Dockerfile", "build.sh", "README.md", "compose.yaml", "k8s/base/kustomization.yaml",
		"k8s/overlays/example/kustomization.yaml", "grafana/mdtap.json", "prometheus/alerts.yaml"} {
		if _, err := os.Stat(filepath.Join(deployDir, name)); err != nil {
			t.Errorf("deploy/%s: %v", name, err)
		}
	}
}

// TestDeployCommands checks every mdtap command line in deploy/ against the
// command tree, and counts what it checked so that it cannot pass by
// finding nothing.
func TestDeployCommands(t *testing.T) {
	files := readDeploy(t)
	var all []*parsedCall
	services, errs := composeServices(t, files)
	for _, s := range services {
		all = append(all, s.calls...)
	}
	objs, configMaps, _ := rawK8s(t, files)
	for _, o := range objs {
		if o.Spec.Template == nil {
			continue
		}
		calls, cerrs := k8sCalls(o, configMaps)
		errs = append(errs, cerrs...)
		for _, c := range calls {
			all = append(all, c)
		}
	}
	docCalls, derrs := docCommandLines(t)
	errs = append(errs, derrs...)
	all = append(all, docCalls...)
	for _, err := range errs {
		t.Error(err)
	}

	commands := map[string]bool{}
	flags := map[string]bool{}
	for _, c := range all {
		commands[c.path()] = true
		c.cmd.Flags().Visit(func(f *pflag.Flag) { flags[c.path()+" --"+f.Name] = true })
	}
	for _, want := range []string{"proxy", "archive", "stream init", "sim", "keys init", "ca init", "audit log", "version"} {
		if !commands[want] {
			t.Errorf("no deploy file runs mdtap %s; checked %v", want, sortedKeys(commands))
		}
	}
	if len(all) < 12 || len(flags) < 30 {
		t.Errorf("checked %d mdtap command lines setting %d flags; want at least 12 and 30", len(all), len(flags))
	}
	t.Logf("checked %d mdtap command lines, %d commands, %d flags set (by argument, environment or --config)", len(all), len(commands), len(flags))
}

// docCommandLines are the mdtap command lines in the Dockerfile (its CMD
// runs with its ENTRYPOINT) and in deploy/README.md's code blocks.
func docCommandLines(t *testing.T) ([]*parsedCall, []error) {
	t.Helper()
	var calls []*parsedCall
	var errs []error
	add := func(where string, args []string) {
		p, err := parseCall(mdtapCall{where: where, args: args})
		if err != nil {
			errs = append(errs, err)
			return
		}
		calls = append(calls, p)
	}
	df := strings.ReplaceAll(readText(t, "Dockerfile"), "\\\n", " ")
	for _, line := range strings.Split(df, "\n") {
		if v, ok := strings.CutPrefix(line, "RUN "); ok {
			for _, args := range shellCalls(v) {
				add("deploy/Dockerfile RUN", args)
			}
		}
	}
	for _, block := range codeBlocks(readText(t, "README.md")) {
		for _, args := range shellCalls(block) {
			if len(args) > 0 && args[0] == "--help" {
				continue
			}
			add("deploy/README.md", args)
		}
	}
	return calls, errs
}

func codeBlocks(md string) []string {
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			if in {
				blocks = append(blocks, strings.Join(cur, "\n"))
				cur = nil
			}
			in = !in
			continue
		}
		if in {
			cur = append(cur, line)
		}
	}
	return blocks
}

func readText(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestDeployCheckerNotVacuous feeds the checker command lines that must fail.
func TestDeployCheckerNotVacuous(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "mdtap.yaml")
	if err := os.WriteFile(cfg, []byte("proxy:\n  listen: 127.0.0.1:8080\n  no-such-key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := mdtapCall{where: "good", args: []string{"proxy", "--listen", "0.0.0.0:8080", "--allow-host=sim:9443"},
		env: map[string]string{"MDTAP_PROXY_ADMIN_LISTEN": "0.0.0.0:9090"}}
	p, err := parseCall(good)
	if err != nil {
		t.Fatalf("a good command line: %v", err)
	}
	if v, _ := p.flag("admin-listen"); v != "0.0.0.0:9090" {
		t.Errorf("admin-listen from the environment: got %q, want 0.0.0.0:9090", v)
	}
	for _, c := range []mdtapCall{
		{where: "unknown flag", args: []string{"proxy", "--no-such-flag", "x"}},
		{where: "flag of another command", args: []string{"archive", "--allow-host", "x"}},
		{where: "unknown command", args: []string{"proxyy", "--listen", "x"}},
		{where: "unknown subcommand", args: []string{"stream", "create"}},
		{where: "group, not a command", args: []string{"keys"}},
		{where: "bad value", args: []string{"stream", "init", "--replicas", "three"}},
		{where: "stray argument", args: []string{"archive", "extra"}},
		{where: "unknown env", args: []string{"proxy"}, env: map[string]string{"MDTAP_PROXY_NO_SUCH": "1"}},
		{where: "env of another command", args: []string{"proxy"}, env: map[string]string{"MDTAP_ARCHIVE_STORE": "file:///x"}},
		{where: "unknown config key", args: []string{"proxy", "--config", "/etc/mdtap.yaml"}, configFile: cfg},
		{where: "unresolved config", args: []string{"proxy", "--config", "/etc/mdtap.yaml"}},
	} {
		if _, err := parseCall(c); err == nil {
			t.Errorf("%s: mdtap %s passed the checker", c.where, strings.Join(c.args, " "))
		}
	}
	if got := shellCalls("test -f x || /mdtap keys init --dir /k && echo done # mdtap proxy"); len(got) != 1 ||
		!slices.Equal(got[0], []string{"keys", "init", "--dir", "/k"}) {
		t.Errorf("shellCalls: got %q, want one call keys init --dir /k", got)
	}
}

// --- images ---

func TestDeployImages(t *testing.T) {
	files := readDeploy(t)
	want := mdtapImage + ":" + mdtapTag
	var errs []error
	var mdtapRefs int
	checkImage := func(where, image string, debugOK bool) {
		switch {
		case isMdtapImage(image):
			mdtapRefs++
			if image != want && !(debugOK && image == want+debugSuffix) {
				errs = append(errs, fmt.Errorf("%s: image %s, want %s", where, image, want))
			}
		case image == "":
			errs = append(errs, fmt.Errorf("%s: no image", where))
		default:
			_, tag, _ := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
			if tag == "" || tag == "latest" {
				errs = append(errs, fmt.Errorf("%s: image %s: pin a version", where, image))
			}
		}
	}

	services, _ := composeServices(t, files)
	for _, s := range services {
		checkImage("compose "+s.name, s.image, s.name == "init")
		if b := mget(s.raw, "build"); b != nil {
			if !isMdtapImage(s.image) {
				errs = append(errs, fmt.Errorf("compose %s: builds an image named %s", s.name, s.image))
			}
			if mstr(b, "context") != ".." || mstr(b, "dockerfile") != "deploy/Dockerfile" {
				errs = append(errs, fmt.Errorf("compose %s: build from context .. with deploy/Dockerfile", s.name))
			}
			if target := mstr(b, "target"); (target == "debug") != strings.HasSuffix(s.image, debugSuffix) {
				errs = append(errs, fmt.Errorf("compose %s: image %s built from target %q", s.name, s.image, target))
			}
		}
	}
	// The compose NATS is the server version the tests embed.
	if nats := services["nats"]; nats == nil {
		errs = append(errs, errors.New("compose: no nats service"))
	} else if v := goModVersion(t, "github.com/nats-io/nats-server/v2"); !strings.HasPrefix(nats.image, "nats:"+majorMinor(v)+"-") &&
		!strings.HasPrefix(nats.image, "nats:"+strings.TrimPrefix(v, "v")) {
		errs = append(errs, fmt.Errorf("compose nats: image %s; the tests embed nats-server %s", nats.image, v))
	}

	objs, _, patches := rawK8s(t, files)
	for _, pf := range patches {
		more, err := k8sObjects(pf.rel, pf.docs)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, more...)
	}
	for _, o := range objs {
		if o.Spec.Template == nil {
			continue
		}
		for _, c := range slices.Concat(o.Spec.Template.Spec.InitContainers, o.Spec.Template.Spec.Containers) {
			if c.Image == "" && slices.ContainsFunc(patches, func(p *deployFile) bool { return p.rel == o.file }) {
				continue // a patch to a container defined elsewhere
			}
			checkImage(fmt.Sprintf("%s container %s", o, c.Name), c.Image, false)
		}
	}
	var kustomizeImages int
	for rel, f := range files {
		if filepath.Base(rel) != "kustomization.yaml" {
			continue
		}
		for _, img := range mlist(f.docs[0], "images") {
			kustomizeImages++
			if mstr(img, "name") != mdtapImage || mstr(img, "newTag") != mdtapTag || (mstr(img, "newName") != "" && mstr(img, "newName") != mdtapImage) {
				errs = append(errs, fmt.Errorf("%s: images entry %v, want name %s newTag %s", rel, img, mdtapImage, mdtapTag))
			}
		}
	}
	if kustomizeImages == 0 {
		errs = append(errs, errors.New("no kustomization pins the mdtap image (images:)"))
	}
	if !strings.Contains(readText(t, "README.md"), "-t "+want) {
		errs = append(errs, fmt.Errorf("deploy/README.md: no `docker build … -t %s`", want))
	}
	for _, err := range errs {
		t.Error(err)
	}
	if mdtapRefs < 6 {
		t.Errorf("found %d references to the mdtap image; want at least 6", mdtapRefs)
	}
}

func goModVersion(t *testing.T, module string) string {
	t.Helper()
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == module || f[0] == "go" && module == "go") {
			return f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == module {
			return f[2]
		}
	}
	t.Fatalf("go.mod: no %s", module)
	return ""
}

func majorMinor(v string) string {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

// TestDeployDockerfile checks the image build: the build command in one
// place (deploy/build.sh, which CI runs without Docker), the Go version of
// go.mod, a static stripped binary with the commit, a non-root user and
// the binary as the entrypoint.
func TestDeployDockerfile(t *testing.T) {
	df := readText(t, "Dockerfile")
	build := readText(t, "build.sh")
	goVersion := majorMinor(goModVersion(t, "go"))
	for _, want := range []string{"FROM golang:" + goVersion + " AS build", "deploy/build.sh /out/mdtap", "ARG COMMIT", `MDTAP_COMMIT="$COMMIT"`} {
		if !strings.Contains(df, want) {
			t.Errorf("deploy/Dockerfile: no %q", want)
		}
	}
	if strings.Contains(df, "go build") {
		t.Error("deploy/Dockerfile runs go build itself; the command belongs in deploy/build.sh")
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w -X main.commit=$commit"`, "./cmd/mdtap"} {
		if !strings.Contains(build, want) {
			t.Errorf("deploy/build.sh: no %q", want)
		}
	}
	if !strings.Contains(build, "go build") {
		t.Error("deploy/build.sh runs no go build")
	}
	if fi, err := os.Stat(filepath.Join(deployDir, "build.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("deploy/build.sh must be executable (the Dockerfile and CI run it): %v", err)
	}
	// Every final stage: distroless, a numeric non-root user, /mdtap.
	stages := strings.Split(df, "\nFROM ")[1:]
	if len(stages) < 2 {
		t.Fatalf("deploy/Dockerfile: %d stages after the build; want a multi-stage build", len(stages)-1)
	}
	for _, st := range stages[1:] {
		from, _, _ := strings.Cut(st, "\n")
		if !strings.HasPrefix(from, "gcr.io/distroless/static") {
			t.Errorf("deploy/Dockerfile: stage FROM %s; want distroless static", from)
		}
		m := regexp.MustCompile(`(?m)^USER (\d+)(:\d+)?$`).FindStringSubmatch(st)
		if m == nil || m[1] == "0" {
			t.Errorf("deploy/Dockerfile: stage FROM %s: want USER <numeric non-root uid>", from)
		}
		if !strings.Contains(st, `ENTRYPOINT ["/mdtap"]`) || !strings.Contains(st, "COPY --from=build /out/mdtap /mdtap") {
			t.Errorf("deploy/Dockerfile: stage FROM %s: want /mdtap from the build stage as the entrypoint", from)
		}
	}
	if last := stages[len(stages)-1]; !strings.Contains(last[:strings.Index(last, "\n")], ":nonroot") {
		t.Errorf("deploy/Dockerfile: the default (last) stage is %q; want the nonroot image without a shell", last[:strings.Index(last, "\n")])
	}
	di, err := os.ReadFile("../../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var ignored []string
	for _, line := range strings.Split(string(di), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			ignored = append(ignored, line)
		}
	}
	if slices.Contains(ignored, "deploy") || slices.Contains(ignored, "deploy/build.sh") || slices.Contains(ignored, "go.mod") {
		t.Error(".dockerignore leaves out what the build needs")
	}
}

// --- ports ---

func hostPort(where, addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s: address %q: %w", where, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("%s: address %q: port: %w", where, addr, err)
	}
	return h, n, nil
}

func isLoopback(host string) bool {
	return host == "localhost" || net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()
}

// urlHostPort is the host and port of a URL, with the scheme's default port.
func urlHostPort(raw string) (string, int, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "nats": "4222", "tls": "4222"}[u.Scheme]
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("url %q: no port", raw)
	}
	return u.Hostname(), n, nil
}

func TestDeployComposePorts(t *testing.T) {
	files := readDeploy(t)
	services, errs := composeServices(t, files)
	checked, perrs := checkCompose(services)
	for _, err := range append(errs, perrs...) {
		t.Error(err)
	}
	if checked < 6 {
		t.Errorf("checked %d references between compose services; want at least 6", checked)
	}

	// Not vacuous: drifted ports fail.
	for name, doctor := range map[string]func(s map[string]*composeService){
		"client's proxy port": func(s map[string]*composeService) { s["client"].env["HTTPS_PROXY"] = "http://proxy:3128" },
		"sim not exposed":     func(s map[string]*composeService) { delete(s["sim"].expose, 9443) },
		"nats port":           func(s map[string]*composeService) { s["nats"].expose = map[int]bool{4223: true} },
		"sim certificate": func(s map[string]*composeService) {
			s["sim"].calls[0].cmd.Flags().Lookup("host").Value.(pflag.SliceValue).Replace([]string{"localhost"})
		},
		"published on all interfaces": func(s map[string]*composeService) {
			s["proxy"].raw.(map[string]any)["ports"] = []any{"9090:9090"}
		},
	} {
		doctored, _ := composeServices(t, readDeploy(t))
		doctor(doctored)
		if _, errs := checkCompose(doctored); len(errs) == 0 {
			t.Errorf("doctored %s: the checker found nothing", name)
		}
	}
}

// checkCompose checks the ports between compose services: where others find
// a service it exposes the port, and an mdtap service listens there on all
// interfaces; published ports are on 127.0.0.1; the client's HTTPS_PROXY is
// the proxy's listener.
func checkCompose(services map[string]*composeService) (checked int, errs []error) {
	listens := map[string]map[int]string{} // service → port → host
	for name, s := range services {
		listens[name] = map[int]string{}
		for _, c := range s.calls {
			for _, fl := range []string{"listen", "admin-listen"} {
				if v, ok := c.flag(fl); ok {
					h, p, err := hostPort(c.where+" --"+fl, v)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					listens[name][p] = h
				}
			}
		}
		for p, h := range listens[name] {
			if s.expose[p] && isLoopback(h) {
				errs = append(errs, fmt.Errorf("compose %s: exposes %d but listens on %s (loopback)", name, p, h))
			}
		}
		for p := range s.expose {
			if isMdtapImage(s.image) {
				if _, ok := listens[name][p]; !ok {
					errs = append(errs, fmt.Errorf("compose %s: exposes %d, where mdtap does not listen (%v)", name, p, listens[name]))
				}
			} else if !strings.Contains(s.commands, strconv.Itoa(p)) {
				errs = append(errs, fmt.Errorf("compose %s: exposes %d, which its command %q does not name", name, p, s.commands))
			}
		}
		for _, pub := range strs(mlist(s.raw, "ports")) {
			parts := strings.Split(pub, ":")
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				errs = append(errs, fmt.Errorf("compose %s: ports %q: publish on 127.0.0.1 only (127.0.0.1:HOST:CONTAINER)", name, pub))
				continue
			}
			if n, _ := strconv.Atoi(parts[2]); !s.expose[n] {
				errs = append(errs, fmt.Errorf("compose %s: publishes %s, which it does not expose", name, parts[2]))
			}
		}
	}
	ref := func(where, host string, port int) {
		checked++
		s, ok := services[host]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s:%d: no compose service %s", where, host, port, host))
			return
		}
		if !s.expose[port] {
			errs = append(errs, fmt.Errorf("%s: %s:%d: service %s exposes %v", where, host, port, host, sortedPorts(s.expose)))
		}
	}
	svcRef := regexp.MustCompile(`\b([a-z][a-z0-9-]*):(\d{2,5})\b`)
	for name, s := range services {
		texts := []string{s.script}
		for _, v := range s.env {
			texts = append(texts, v)
		}
		for _, c := range s.calls {
			c.cmd.Flags().VisitAll(func(f *pflag.Flag) {
				if f.Name != "listen" && f.Name != "admin-listen" {
					texts = append(texts, f.Value.String())
				}
			})
		}
		for _, text := range texts {
			for _, m := range svcRef.FindAllStringSubmatch(text, -1) {
				if _, isService := services[m[1]]; isService {
					p, _ := strconv.Atoi(m[2])
					ref("compose "+name, m[1], p)
				}
			}
		}
	}
	// The proxy the client uses is the proxy's listener.
	client, proxySvc := services["client"], services["proxy"]
	if client == nil || proxySvc == nil || len(proxySvc.calls) != 1 {
		return checked, append(errs, errors.New("compose: want services client and proxy (one mdtap proxy)"))
	}
	// The proxy verifies the simulator's certificate by the name it calls.
	allow, _ := proxySvc.calls[0].flag("allow-host")
	for _, a := range strings.Split(strings.Trim(allow, "[]"), ",") {
		host, _, _ := strings.Cut(a, ":")
		sim := services[host]
		if sim == nil || len(sim.calls) != 1 || sim.calls[0].path() != "sim" {
			continue
		}
		if names, _ := sim.calls[0].flag("host"); !slices.Contains(strings.Split(strings.Trim(names, "[]"), ","), host) {
			errs = append(errs, fmt.Errorf("compose proxy: --allow-host %s, but the simulator's certificate names %s", a, names))
		}
	}
	h, p, err := urlHostPort(client.env["HTTPS_PROXY"])
	listen, _ := proxySvc.calls[0].flag("listen")
	_, lp, _ := hostPort("proxy", listen)
	if err != nil || h != "proxy" || p != lp {
		errs = append(errs, fmt.Errorf("compose client: HTTPS_PROXY %q; the proxy listens on %d (%v)", client.env["HTTPS_PROXY"], lp, err))
	}
	return checked, errs
}

func sortedPorts(m map[int]bool) []int {
	var out []int
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// checkK8sPods checks each pod template that runs mdtap: admin port =
// containerPort = probes = scrape annotation; the proxy's listener =
// HTTPS_PROXY = the JVM's proxy port; the termination grace covers the
// shutdown grace; the sidecar is native; restrictive security contexts and
// secret modes; NATS reachable through the egress policies.
func checkK8sPods(objs []*k8sObject, configMaps map[string]map[string]string) (checked int, errs []error) {
	natsPorts := map[int]bool{}
	for _, o := range objs {
		if o.Spec.Template == nil {
			continue
		}
		pod := o.Spec.Template
		calls, cerrs := k8sCalls(o, configMaps)
		errs = append(errs, cerrs...)
		all := slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
		for _, c := range all {
			where := fmt.Sprintf("%s container %s", o, c.Name)
			sc := c.SecurityContext
			nonRoot := pod.Spec.SecurityContext.RunAsNonRoot != nil && *pod.Spec.SecurityContext.RunAsNonRoot ||
				sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot
			if sc == nil || !nonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
				errs = append(errs, fmt.Errorf("%s: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", where))
			}
			if len(c.Resources.Requests) == 0 || c.Resources.Limits["memory"] == nil {
				errs = append(errs, fmt.Errorf("%s: want resource requests and a memory limit", where))
			}
		}
		var proxyListen string
		for _, c := range all {
			p := calls[c.Name]
			if p == nil {
				continue
			}
			where := p.where
			checked++
			if v, ok := p.flag("nats"); ok {
				for _, u := range strings.Split(v, ",") {
					if _, port, err := urlHostPort(u); err != nil {
						errs = append(errs, fmt.Errorf("%s: --nats %s: %w", where, v, err))
					} else {
						natsPorts[port] = true
					}
				}
			}
			if admin, ok := p.flag("admin-listen"); ok {
				h, port, err := hostPort(where+" --admin-listen", admin)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if isLoopback(h) {
					errs = append(errs, fmt.Errorf("%s: --admin-listen %s: the kubelet and Prometheus cannot reach loopback", where, admin))
				}
				named := map[string]int{}
				for _, cp := range c.Ports {
					named[cp.Name] = cp.ContainerPort
				}
				if named["admin"] != port {
					errs = append(errs, fmt.Errorf("%s: containerPort admin %d, --admin-listen port %d", where, named["admin"], port))
				}
				for _, pr := range []struct {
					kind, path string
					probe      *k8sProbe
				}{{"liveness", "/healthz", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}, {"startup", "", c.StartupProbe}} {
					if pr.probe == nil {
						if pr.kind != "startup" {
							errs = append(errs, fmt.Errorf("%s: no %s probe", where, pr.kind))
						}
						continue
					}
					if pr.probe.HTTPGet == nil {
						errs = append(errs, fmt.Errorf("%s: %s probe: want httpGet", where, pr.kind))
						continue
					}
					pp := pr.probe.HTTPGet.Port
					if s, ok := pp.(string); ok {
						pp = named[s]
					}
					if pp != port || pr.path != "" && pr.probe.HTTPGet.Path != pr.path {
						errs = append(errs, fmt.Errorf("%s: %s probe %v%s; want port %d path %s", where, pr.kind, pr.probe.HTTPGet.Port, pr.probe.HTTPGet.Path, port, pr.path))
					}
				}
				if a := pod.Metadata.Annotations["prometheus.io/port"]; a != strconv.Itoa(port) {
					errs = append(errs, fmt.Errorf("%s: annotation prometheus.io/port %q, --admin-listen port %d", where, a, port))
				}
			}
			grace := 30 * time.Second // Kubernetes' default
			if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = time.Duration(*g) * time.Second
			}
			need := archive.DefaultShutdownGrace
			if p.path() == "proxy" {
				v, _ := p.flag("shutdown-grace")
				d, err := time.ParseDuration(v)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: --shutdown-grace %q: %w", where, v, err))
				}
				need = d
				proxyListen, _ = p.flag("listen")
				if c.RestartPolicy != "Always" || !slices.ContainsFunc(pod.Spec.InitContainers, func(ic k8sContainer) bool { return ic.Name == c.Name }) {
					errs = append(errs, fmt.Errorf("%s: want a native sidecar (initContainers, restartPolicy: Always)", where))
				}
			}
			if p.path() == "proxy" || p.path() == "archive" {
				if grace < need+5*time.Second {
					errs = append(errs, fmt.Errorf("%s: terminationGracePeriodSeconds %s; the command's shutdown grace is %s", where, grace, need))
				}
			}
			// Secrets an mdtap server reads: no world bits, owner-read only (fsGroup adds group read).
			for _, m := range c.VolumeMounts {
				for _, v := range pod.Spec.Volumes {
					if v.Name == m.Name && v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400) {
						errs = append(errs, fmt.Errorf("%s: secret volume %s: want defaultMode 0400", where, v.Name))
					}
				}
			}
		}
		if proxyListen == "" {
			continue
		}
		lh, lp, err := hostPort(o.String()+" proxy --listen", proxyListen)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var clients int
		for _, c := range pod.Spec.Containers {
			for _, e := range c.Env {
				where := fmt.Sprintf("%s container %s: %s", o, c.Name, e.Name)
				switch e.Name {
				case "HTTPS_PROXY", "https_proxy":
					clients++
					h, p, err := urlHostPort(e.Value)
					if err != nil || p != lp || !(h == lh || isLoopback(h) && (isLoopback(lh) || lh == "0.0.0.0")) {
						errs = append(errs, fmt.Errorf("%s=%s; the proxy listens on %s", where, e.Value, proxyListen))
					}
				case "JAVA_TOOL_OPTIONS":
					host := regexp.MustCompile(`-Dhttps\.proxyHost=(\S+)`).FindStringSubmatch(e.Value)
					port := regexp.MustCompile(`-Dhttps\.proxyPort=(\d+)`).FindStringSubmatch(e.Value)
					if host == nil || port == nil || port[1] != strconv.Itoa(lp) || !isLoopback(host[1]) {
						errs = append(errs, fmt.Errorf("%s: https.proxyHost/Port; the proxy listens on %s", where, proxyListen))
					}
				}
			}
		}
		if clients == 0 {
			errs = append(errs, fmt.Errorf("%s: a proxy sidecar, but no container sets HTTPS_PROXY", o))
		}
	}
	// The egress policies let the pods they select reach NATS and DNS.
	var policies int
	for _, o := range objs {
		if o.Kind != "NetworkPolicy" {
			continue
		}
		policies++
		ports := map[string]bool{}
		for _, e := range o.Spec.Egress {
			for _, p := range e.Ports {
				ports[fmt.Sprintf("%s/%v", p.Protocol, p.Port)] = true
			}
		}
		for p := range natsPorts {
			if !ports[fmt.Sprintf("TCP/%d", p)] {
				errs = append(errs, fmt.Errorf("%s: no egress to the NATS port %d", o, p))
			}
		}
		if !ports["UDP/53"] {
			errs = append(errs, fmt.Errorf("%s: no egress to DNS (UDP 53)", o))
		}
	}
	if len(natsPorts) != 1 || policies == 0 {
		errs = append(errs, fmt.Errorf("want one NATS port across the manifests (got %v) and egress policies (got %d)", sortedPorts(natsPorts), policies))
	}
	return checked, errs
}

func TestDeployK8s(t *testing.T) {
	files := readDeploy(t)
	objs, configMaps, patches := rawK8s(t, files)
	checked, errs := checkK8sPods(objs, configMaps)
	for _, err := range errs {
		t.Error(err)
	}
	if checked < 3 {
		t.Errorf("checked %d mdtap containers in the Kubernetes base; want at least 3 (proxy, archive, stream init)", checked)
	}
	// The JVM component's proxy settings match the base's proxy listener.
	var jvm int
	for _, pf := range patches {
		for _, line := range strings.Split(readText(t, pf.rel), "\n") {
			if m := regexp.MustCompile(`-Dhttps\.proxyPort=(\d+)`).FindStringSubmatch(line); m != nil {
				jvm++
				if m[1] != "8080" || !strings.Contains(readText(t, "k8s/base/mdtap.yaml"), "listen: 127.0.0.1:"+m[1]) {
					t.Errorf("%s: https.proxyPort=%s; deploy/k8s/base/mdtap.yaml: proxy listen differs", pf.rel, m[1])
				}
			}
		}
	}
	if jvm == 0 {
		t.Error("no JVM variant (-Dhttps.proxyPort) in the kustomize patches")
	}

	// Not vacuous: a drifted manifest fails.
	for name, doctor := range map[string]func(o *k8sObject){
		"admin containerPort": func(o *k8sObject) { o.Spec.Template.Spec.InitContainers[0].Ports[0].ContainerPort = 9999 },
		"HTTPS_PROXY port":    func(o *k8sObject) { o.Spec.Template.Spec.Containers[0].Env[0].Value = "http://127.0.0.1:3128" },
		"short grace":         func(o *k8sObject) { g := 10; o.Spec.Template.Spec.TerminationGracePeriodSeconds = &g },
		"not a native sidecar": func(o *k8sObject) {
			o.Spec.Template.Spec.InitContainers[0].RestartPolicy = ""
		},
		"unknown flag": func(o *k8sObject) {
			c := &o.Spec.Template.Spec.InitContainers[0]
			c.Args = append(slices.Clone(c.Args), "--no-such-flag")
		},
	} {
		doctored, _, _ := rawK8s(t, files)
		i := slices.IndexFunc(doctored, func(o *k8sObject) bool { return o.Kind == "Deployment" && o.Metadata.Name == "asset-sync" })
		if i < 0 {
			t.Fatal("no Deployment asset-sync in the Kubernetes base")
		}
		doctor(doctored[i])
		if _, errs := checkK8sPods(doctored, configMaps); len(errs) == 0 {
			t.Errorf("doctored %s: the checker found nothing", name)
		}
	}
}

// TestDeployKustomize renders the example overlay with the kustomize
// library kubectl embeds (built from tools/go.mod, so no kubectl is needed)
// and checks the result as applied.
func TestDeployKustomize(t *testing.T) {
	kustomize := toolbin.Path(t, "github.com/mdtap/mdtap/tools/cmd/kustomize")
	var stderr bytes.Buffer
	cmd := exec.Command(kustomize, filepath.Join(deployDir, "k8s/overlays/example"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize: %v: %s", err, stderr.String())
	}
	docs, err := decodeYAMLDocs(out)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := k8sObjects("overlays/example", docs)
	if err != nil {
		t.Fatal(err)
	}
	checked, errs := checkK8sPods(objs, renderedConfigMaps(t, objs))
	for _, err := range errs {
		t.Error(err)
	}
	if checked < 3 {
		t.Errorf("checked %d mdtap containers in the rendered overlay; want at least 3", checked)
	}
	rendered := string(out)
	for _, want := range []string{"image: " + mdtapImage + ":" + mdtapTag, "JAVA_TOOL_OPTIONS", "namespace: mdtap-example"} {
		if !strings.Contains(rendered, want) {
			t.Errorf("rendered overlay: no %q", want)
		}
	}
}

// --- metrics ---

// documentedMetrics reads docs/metrics.md's tables: name → type and labels.
func documentedMetrics(t *testing.T) map[string]docMetric {
	t.Helper()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]docMetric{}
	row := regexp.MustCompile("^\\| `(mdtap_[a-z0-9_]+)` \\| (counter|gauge|histogram) \\| ([^|]*) \\|")
	for _, line := range strings.Split(string(b), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		labels := map[string]bool{}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSpace(l); l != "" && l != "—" {
				labels[l] = true
			}
		}
		out[m[1]] = docMetric{kind: m[2], labels: labels}
	}
	if len(out) < 30 {
		t.Fatalf("docs/metrics.md: read %d metrics from its tables; the table format changed?", len(out))
	}
	return out
}

type docMetric struct {
	kind   string
	labels map[string]bool
}

var (
	metricRef   = regexp.MustCompile(`\b(mdtap_[a-z0-9_]+)(\{[^}]*\})?`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	// Labels Prometheus adds to every series from the target.
	targetLabels = map[string]bool{"pod": true, "container": true, "namespace": true, "instance": true, "job": true}
)

// checkMetricExprs checks the metrics and label matchers of PromQL
// expressions against the documentation; it returns the metrics used.
func checkMetricExprs(doc map[string]docMetric, where string, exprs []string) (map[string]bool, []error) {
	used := map[string]bool{}
	var errs []error
	for _, e := range exprs {
		for _, m := range metricRef.FindAllStringSubmatch(e, -1) {
			name, base := m[1], m[1]
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suf); ok && doc[b].kind == "histogram" {
					base = b
				}
			}
			d, ok := doc[base]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %s is not in docs/metrics.md", where, name))
				continue
			}
			used[base] = true
			for _, l := range matcherName.FindAllStringSubmatch(m[2], -1) {
				if !d.labels[l[1]] && !targetLabels[l[1]] && !(l[1] == "le" && base != name) {
					errs = append(errs, fmt.Errorf("%s: %s has no label %s in docs/metrics.md", where, base, l[1]))
				}
			}
		}
	}
	return used, errs
}

func TestDeployMetricsDocumented(t *testing.T) {
	doc := documentedMetrics(t)
	files := readDeploy(t)

	var alertExprs []string
	alerts := files["prometheus/alerts.yaml"].docs[0]
	for _, g := range mlist(alerts, "groups") {
		for _, r := range mlist(g, "rules") {
			if mstr(r, "alert") == "" || mstr(r, "expr") == "" || mstr(r, "labels", "severity") == "" {
				t.Errorf("prometheus/alerts.yaml: rule %v: want alert, expr and a severity label", r)
			}
			alertExprs = append(alertExprs, mstr(r, "expr"))
		}
	}
	usedAlerts, errs := checkMetricExprs(doc, "prometheus/alerts.yaml", alertExprs)
	for _, want := range []string{"mdtap_spool_bytes", "mdtap_archive_lag_records", "mdtap_capture_dropped_total", "mdtap_capture_degraded_total", "mdtap_provider_responses_total"} {
		if !usedAlerts[want] {
			t.Errorf("prometheus/alerts.yaml: no alert on %s", want)
		}
	}
	if !slices.ContainsFunc(alertExprs, func(e string) bool { return strings.Contains(e, `rsp_code!="00000"`) }) {
		t.Error("prometheus/alerts.yaml: no provider error rate (rsp_code != 00000)")
	}

	var dashExprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				dashExprs = append(dashExprs, e)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(files["grafana/mdtap.json"].docs[0])
	usedDash, derrs := checkMetricExprs(doc, "grafana/mdtap.json", dashExprs)
	errs = append(errs, derrs...)
	for _, err := range errs {
		t.Error(err)
	}
	if len(usedDash) < 25 || len(usedAlerts) < 10 {
		t.Errorf("the dashboard uses %d documented metrics, the alerts %d; want at least 25 and 10", len(usedDash), len(usedAlerts))
	}

	// Not vacuous.
	for _, e := range []string{`rate(mdtap_no_such_metric_total[5m])`, `mdtap_provider_responses_total{rsp_cod="00000"}`, `mdtap_spool_bytes_bucket`} {
		if _, errs := checkMetricExprs(doc, "doctored", []string{e}); len(errs) == 0 {
			t.Errorf("doctored expression %s passed", e)
		}
	}
}
