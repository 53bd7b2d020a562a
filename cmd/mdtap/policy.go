package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/redact"
)

const policyFlagHelp = "policy: builtin (the MyData policy), strict (amounts and dates encrypted too), or a YAML `file`"

func newPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Inspect and validate protection policies",
		Long: `A policy says what happens to each value of a captured exchange: drop, mask,
encrypt, tokenize, hash or keep. Default-deny: a value no rule names is
encrypted and a header no rule names is left out. A file with
"extends: builtin" layers its rules over the built-in MyData policy;
otherwise it replaces it.`,
	}
	cmd.AddCommand(newPolicyShowCmd(a), newPolicyCheckCmd(a), newPolicyUnknownCmd(a))
	return cmd
}

func newPolicyShowCmd(a *app) *cobra.Command {
	var spec string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print a policy: the built-in one by default",
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch spec {
			case "", redact.ProfileBuiltin, redact.ProfileStrict:
				if spec == "" {
					spec = redact.ProfileBuiltin
				}
				text, err := redact.BuiltinText(spec)
				if err != nil {
					return err
				}
				_, err = a.stdout.Write(text)
				return err
			}
			p, err := redact.Load(spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "# policy %s: %d rules, built-in layers first\n", p.ID, len(p.Rules()))
			enc := json.NewEncoder(a.stdout)
			for _, r := range p.Rules() {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&spec, "policy", "", policyFlagHelp)
	return cmd
}

func newPolicyCheckCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a policy file",
		Long:  "Validate a policy file: syntax, known fields, one selector and a valid action per rule.\nExits 0 when valid, 1 with the first problem otherwise.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := redact.Load(args[0])
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			_, err = fmt.Fprintf(a.stdout, "%s: ok (policy %s, %d rules)\n", args[0], p.ID, len(p.Rules()))
			return err
		},
	}
}

func newPolicyUnknownCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "unknown",
		Short: "Count the fields only the default rule caught, from protected records on stdin",
		Long: `Read protected records (JSON lines) on stdin and count, per path, the values
that no policy rule named, so the default rule encrypted them. Use it to
classify a provider's new fields. Only names are read; no value is.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			counts := map[string]int{}
			records := 0
			err := eachRecord(a.stdin, func(rec *mdtap.Record) error {
				records++
				for _, p := range rec.Unclassified {
					counts[p]++
				}
				return nil
			})
			if err != nil {
				return err
			}
			type row struct {
				Path    string `json:"path"`
				Records int    `json:"records"`
			}
			rows := make([]row, 0, len(counts))
			for p, n := range counts {
				rows = append(rows, row{p, n})
			}
			sort.Slice(rows, func(i, j int) bool {
				if rows[i].Records != rows[j].Records {
					return rows[i].Records > rows[j].Records
				}
				return rows[i].Path < rows[j].Path
			})
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(rows)
			}
			fmt.Fprintf(a.stderr, "%d records, %d unclassified paths\n", records, len(rows))
			for _, r := range rows {
				fmt.Fprintf(a.stdout, "%d\t%s\n", r.Records, r.Path)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array of {path, records}")
	return cmd
}

// eachRecord decodes JSON-lines records. A bad line stops with its number;
// the error never quotes the line.
func eachRecord(r io.Reader, fn func(*mdtap.Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var rec mdtap.Record
		if err := json.Unmarshal([]byte(text), &rec); err != nil {
			return fmt.Errorf("input line %d: not a record (%s)", line, jsonErrorShape(err))
		}
		if rec.V > mdtap.SchemaVersion {
			return fmt.Errorf("input line %d: record version %d is newer than this mdtap reads (%d)", line, rec.V, mdtap.SchemaVersion)
		}
		if err := fn(&rec); err != nil {
			return fmt.Errorf("input line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	return nil
}

// jsonErrorShape describes a decoding error without the offending text.
func jsonErrorShape(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("syntax error at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("field %s has the wrong type", e.Field)
	}
	return "invalid JSON"
}
