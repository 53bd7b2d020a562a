package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// app is what every command shares: the process's streams and environment,
// the loaded configuration and the logger built from the global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)

	configPath string
	logLevel   string
	logFormat  string

	config *configFile
	log    zerolog.Logger
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "mdtap",
		Short: "Capture sidecar for Korean MyData API traffic",
		Long: `mdtap records every MyData request and response a client service exchanges
with information providers, drops secrets, encrypts personal and financial
fields with Tink, streams the protected records over NATS JetStream and
archives them to S3-compatible storage.

Every flag can also be set in the environment as MDTAP_<COMMAND>_<FLAG>
(MDTAP_SIM_LISTEN, MDTAP_KEYS_INIT_DIR; dashes become underscores, lists are
comma-separated) and in a YAML file given with --config, one section per
command. The command line wins over the environment, the environment over
the file. Sizes take units (256KiB, 64MiB); durations Go syntax (90s, 168h).`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup(cmd)
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", "", "YAML configuration `file`, one section per command")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&a.logFormat, "log-format", "json", "log format: json or console")

	root.AddCommand(
		newDemoCmd(a),
		newProxyCmd(a),
		newArchiveCmd(a),
		newAuditCmd(a),
		newCACmd(a),
		newStreamCmd(a),
		newSimCmd(a),
		newKeysCmd(a),
		newPolicyCmd(a),
		newRedactCmd(a),
		newRevealCmd(a),
		newBenchCmd(a),
		newVersionCmd(a),
	)
	annotateEnv(root)
	wrapAllArgs(root)
	return root
}

// setup runs before every command: it layers environment and configuration
// file under the command line, then builds the logger.
func (a *app) setup(cmd *cobra.Command) error {
	root := cmd.Root()
	if !root.PersistentFlags().Changed("config") {
		if v, ok := a.lookupEnv("MDTAP_CONFIG"); ok {
			a.configPath = v
		}
	}
	if a.configPath != "" {
		cfg, err := loadConfig(a.configPath, root)
		if err != nil {
			return &usageError{err}
		}
		a.config = cfg
	}
	if err := applyLayers(cmd, a.config, a.lookupEnv); err != nil {
		return &usageError{err}
	}
	log, err := newLogger(a.stderr, a.logLevel, a.logFormat)
	if err != nil {
		return &usageError{err}
	}
	a.log = log
	return nil
}

func newLogger(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(level))
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, NoColor: !isTerminal(w)}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want json or console", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// annotateEnv appends each flag's environment variable to its help text, so
// `--help` documents both spellings.
func annotateEnv(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		fs := c.LocalNonPersistentFlags()
		if c == root {
			fs = c.PersistentFlags()
		}
		fs.VisitAll(func(f *pflag.Flag) {
			f.Usage += fmt.Sprintf(" [$%s]", envName(c, f.Name))
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func wrapAllArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		if sub.Runnable() {
			sub.Args = wrapArgs(sub.Args)
		}
		wrapAllArgs(sub)
	}
}

// wrapArgs turns cobra's positional-argument errors into usage errors.
func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	if check == nil {
		check = cobra.NoArgs
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}
