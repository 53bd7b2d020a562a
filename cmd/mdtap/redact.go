package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
	"github.com/mdtap/mdtap/stream"
)

func newRedactCmd(a *app) *cobra.Command {
	var keyDir, policy string
	cmd := &cobra.Command{
		Use:   "redact",
		Short: "Protect raw records from stdin with a policy, to try the policy",
		Long: `Read raw records (JSON lines, the record schema with bodies as captured:
a JSON body as its JSON value, a form body as an object of string arrays, an
opaque body as a base64 string) on stdin and print the protected records.

Raw records hold plaintext: keep them out of shared places.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyDir == "" {
				return usagef("--keys is required")
			}
			p, err := redact.Load(policy)
			if err != nil {
				return usagef("%w", err)
			}
			set, err := keys.Load(cmd.Context(), keyDir)
			if err != nil {
				return err
			}
			r := redact.New(p, set)
			w := bufio.NewWriter(a.stdout)
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			err = eachRecord(a.stdin, func(rec *mdtap.Record) error {
				out, err := r.Protect(rec)
				if err != nil {
					return err
				}
				return enc.Encode(out)
			})
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&keyDir, "keys", "", "key `dir` (mdtap keys init)")
	cmd.Flags().StringVar(&policy, "policy", "", policyFlagHelp)
	return cmd
}

func newRevealCmd(a *app) *cobra.Command {
	var keyDir, actor, reason, logPath, storeURL, storeCA, subjectsBucket string
	var subjectNATS headFlags
	cmd := &cobra.Command{
		Use:   "reveal",
		Short: "Reverse the encrypt and tokenize values of protected records from stdin",
		Long: `Read protected records (JSON lines) on stdin and print them with every
encrypt and tokenize value restored where the keys allow. Values under a
destroyed key print as mdtap:shred:v1:…; drop, mask and hash values are
irreversible.

Every run appends to the access log, hash-chained: a start entry (actor,
reason, time) before any output, and a completion entry (records, values
revealed, key ids used) after. With --store the log is the archive store's
(access-log/…, the one mdtap audit writes and reviews), else the local
--access-log file.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case keyDir == "":
				return usagef("--keys is required")
			case actor == "":
				return usagef("--actor is required: who is reading")
			case reason == "":
				return usagef("--reason is required: why (the access log keeps it)")
			}
			set, err := keys.Load(cmd.Context(), keyDir, keys.PurposeAEAD, keys.PurposeDAEAD)
			if err != nil {
				return err
			}
			// Values under a subject's own keys open with them (--nats).
			openers, closeSubjects, err := subjectOpenersFor(cmd.Context(), a, &subjectNATS.nats, subjectsBucket, set)
			if err != nil {
				return err
			}
			defer closeSubjects()
			rv := &redact.Revealer{Keys: set, Subjects: openers}
			appendLog, err := revealAccessLog(cmd, a, logPath, storeURL, storeCA)
			if err != nil {
				return err
			}
			entry := mdtap.AccessEntry{
				ID: ulid.Make().String(), Time: mdtap.Timestamp{Time: time.Now()}, Event: mdtap.AccessStart,
				Actor: actor, Reason: reason, Command: "reveal", Decrypt: true,
				Filter: map[string]string{"input": "stdin"},
			}
			if err := appendLog(entry); err != nil {
				return fmt.Errorf("no access without a log entry: %w", err)
			}
			var total redact.RevealStats
			keyIDs := map[uint32]bool{}
			records := 0
			w := bufio.NewWriter(a.stdout)
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			err = eachRecord(a.stdin, func(rec *mdtap.Record) error {
				out, st, err := rv.Reveal(cmd.Context(), rec)
				if err != nil {
					return err
				}
				records++
				total.Revealed += st.Revealed
				total.Shredded += st.Shredded
				total.Unavailable += st.Unavailable
				for id := range st.KeyIDs {
					keyIDs[id] = true
				}
				return enc.Encode(out)
			})
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			done := entry
			done.Time, done.Event = mdtap.Timestamp{Time: time.Now()}, mdtap.AccessComplete
			done.Records, done.Revealed, done.Shredded, done.Unavailable = records, total.Revealed, total.Shredded, total.Unavailable
			for id := range keyIDs {
				done.KeyIDs = append(done.KeyIDs, id)
			}
			slices.Sort(done.KeyIDs)
			if err != nil {
				done.Event, done.Error = mdtap.AccessFail, err.Error()
			}
			if lerr := appendLog(done); lerr != nil && err == nil {
				err = fmt.Errorf("write access log completion: %w", lerr)
			}
			if err == nil && total.Shredded > 0 {
				fmt.Fprintf(a.stderr, "%d values are shredded (their key was destroyed)\n", total.Shredded)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&keyDir, "keys", "", "key `dir` holding the aead and daead keysets")
	cmd.Flags().StringVar(&actor, "actor", "", "who is reading (recorded in the access log)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the access log)")
	cmd.Flags().StringVar(&logPath, "access-log", defaultAccessLog(), "access log `file` (JSON lines, hash-chained)")
	subjectNATS.nats.register(cmd.Flags())
	nf := cmd.Flags().Lookup("nats")
	nf.Usage = "NATS server `URL` holding the per-subject keysets (mdtap proxy --subject-keys); none by default"
	nf.DefValue, subjectNATS.nats.url = "", ""
	cmd.Flags().StringVar(&subjectsBucket, "subjects-bucket", stream.DefaultSubjectsBucket, "NATS key-value `bucket` of the per-subject keysets")
	cmd.Flags().StringVar(&storeURL, "store", "", "archive store `URL`: log to its access log (as mdtap audit does) instead of --access-log")
	cmd.Flags().StringVar(&storeCA, "store-ca", "", "PEM `file` of CAs to trust for a private S3 endpoint")
	return cmd
}

func defaultAccessLog() string {
	if dir, err := os.UserConfigDir(); err == nil {
		return dir + "/mdtap/access-log.jsonl"
	}
	return "mdtap-access-log.jsonl"
}
