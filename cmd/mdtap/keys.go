package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/redact"
	"github.com/mdtap/mdtap/stream"
)

// newKeysCmd is the `mdtap keys` group: it manages the three Tink keysets in
// a key directory. Each subcommand has its own --dir (the configuration
// layering handles a command's own flags only), so the environment variable
// is MDTAP_KEYS_<SUBCOMMAND>_DIR.
func newKeysCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the Tink keysets that protect captured fields",
		Long: `mdtap protects fields with three Tink keysets, one per purpose:

  aead   AES256_GCM        the encrypt action (reversible, randomised)
  daead  AES256_SIV        the tokenize action (reversible, deterministic)
  prf    HMAC_SHA256_PRF   the hash action and blind indexes (one-way)

They live in a key directory as Tink encrypted keysets, wrapped by a
key-encryption key (KEK) named by a URI, each beside a metadata file with
creation times and tombstones. Plaintext key material is never written to
disk, except for the development KEK of a local:// URI.

Running sidecars poll the directory (or watch the NATS bucket that
'mdtap keys publish' fills) and reload changed keysets, so a rotation needs
no restart. Data subjects' own keys ('mdtap keys forget') and retention by
period ('mdtap keys retire') are described in docs/keys.md.`,
	}
	cmd.AddCommand(
		newKeysInitCmd(a),
		newKeysAddCmd(a),
		newKeysPromoteCmd(a),
		newKeysRotateCmd(a),
		newKeysListCmd(a),
		newKeysDisableCmd(a),
		newKeysEnableCmd(a),
		newKeysDestroyCmd(a),
		newKeysRetireCmd(a),
		newKeysPublishCmd(a),
		newKeysForgetCmd(a),
	)
	return cmd
}

func dirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "dir", "", "key `directory` (required)")
}

func checkDir(dir string) error {
	if dir == "" {
		return usagef("--dir is required: the key directory")
	}
	return nil
}

func newKeysInitCmd(a *app) *cobra.Command {
	var dir, kek string
	cmd := &cobra.Command{
		Use:   "init --dir DIR [--kek URI]",
		Short: "Create the three keysets in a new key directory",
		Long: `Init creates the aead, daead and prf keysets in DIR, each with one primary
key, encrypted under the KEK, and records the KEK URI so that later commands
need no --kek. It creates DIR with mode 0700 if needed (and sets it to
0700); every file is mode 0600. It refuses to overwrite existing keysets.

KEK URIs:

  local://PATH   a cleartext Tink keyset file, for development only; a
                 relative PATH is relative to DIR, so the directory can be
                 moved whole. Generated if the file does not exist.
  aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID
                 an AWS KMS key; credentials and endpoint from the AWS SDK's
                 standard configuration (AWS_ACCESS_KEY_ID …, AWS_PROFILE,
                 AWS_ENDPOINT_URL_KMS).

Without --kek, init generates a local KEK at DIR/kek.json (local://kek.json).`,
		Example: `  mdtap keys init --dir /var/lib/mdtap/keys
  mdtap keys init --dir keys --kek aws-kms://arn:aws:kms:ap-northeast-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDir(dir); err != nil {
				return err
			}
			if err := keys.Init(cmd.Context(), dir, kek); err != nil {
				return err
			}
			uri := kek
			if uri == "" {
				uri = keys.DefaultKEKURI
			}
			fmt.Fprintf(a.stderr, "mdtap: created keysets aead, daead and prf in %s under KEK %s\n", dir, uri)
			if strings.HasPrefix(uri, keys.SchemeLocal) {
				fmt.Fprintf(a.stderr, "mdtap: note: a local KEK is for development: whoever reads it and the keysets can decrypt everything; use --kek aws-kms://… in production\n")
			}
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&kek, "kek", "", "key-encryption key `URI`: local://PATH or aws-kms://ARN (default local://kek.json in DIR)")
	return cmd
}

func newKeysAddCmd(a *app) *cobra.Command {
	var dir, purpose string
	cmd := &cobra.Command{
		Use:   "add --dir DIR --purpose aead|daead|prf",
		Short: "Add a key that is enabled but not primary; print its id",
		Long: `Add adds a new key to one keyset, enabled but not primary, and prints its
key id alone on stdout.

This is the first step of a fleet rotation: readers that load the new key
can decrypt what it will encrypt. Once every node has picked it up (they
poll the key directory), make it primary with 'mdtap keys promote'.`,
		Example: `  id=$(mdtap keys add --dir keys --purpose aead)
  # … wait until every node has reloaded …
  mdtap keys promote --dir keys --key-id "$id"`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDir(dir); err != nil {
				return err
			}
			if purpose == "" {
				return usagef("--purpose is required: aead, daead or prf")
			}
			p, err := keys.ParsePurpose(purpose)
			if err != nil {
				return usagef("--purpose: %v", err)
			}
			id, err := keys.Add(cmd.Context(), dir, p)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, id)
			return err
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&purpose, "purpose", "", "keyset to add to: aead, daead or prf (required)")
	return cmd
}

// keyIDCmd builds the commands that act on one key by id.
func keyIDCmd(a *app, use, short, long string, op func(*cobra.Command, string, uint32) error, done string) *cobra.Command {
	var dir string
	var id uint32
	cmd := &cobra.Command{
		Use:   use + " --dir DIR --key-id N",
		Short: short,
		Long:  long,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDir(dir); err != nil {
				return err
			}
			if !cmd.Flags().Changed("key-id") {
				return usagef("--key-id is required: see 'mdtap keys list --dir %s'", dir)
			}
			if err := op(cmd, dir, id); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "mdtap: key %d %s\n", id, done)
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().Uint32Var(&id, "key-id", 0, "Tink key `id`, as 'mdtap keys list' shows it (required)")
	return cmd
}

func newKeysPromoteCmd(a *app) *cobra.Command {
	return keyIDCmd(a, "promote", "Make an enabled key its keyset's primary",
		`Promote makes an enabled key the primary of its keyset: new values are
encrypted, tokenized or hashed under it. The previous primary stays enabled,
so what it protected still decrypts.

In a fleet, promote a key only after every node has loaded it (see
'mdtap keys add'); otherwise a node that has not reloaded yet cannot decrypt
values the others write.`,
		func(cmd *cobra.Command, dir string, id uint32) error { return keys.Promote(cmd.Context(), dir, id) },
		"is now primary")
}

func newKeysDisableCmd(a *app) *cobra.Command {
	return keyIDCmd(a, "disable", "Stop using a key without destroying it",
		`Disable keeps a key's material but stops its use: values under it no longer
decrypt (readers report the key unavailable) and blind-index searches skip
it, until 'mdtap keys enable'. It refuses the primary key: promote another
first.`,
		func(cmd *cobra.Command, dir string, id uint32) error { return keys.Disable(cmd.Context(), dir, id) },
		"disabled")
}

func newKeysEnableCmd(a *app) *cobra.Command {
	return keyIDCmd(a, "enable", "Enable a disabled key again",
		`Enable makes a disabled key usable for decryption and blind-index searches
again. A destroyed key cannot be enabled.`,
		func(cmd *cobra.Command, dir string, id uint32) error { return keys.Enable(cmd.Context(), dir, id) },
		"enabled")
}

func newKeysDestroyCmd(a *app) *cobra.Command {
	return keyIDCmd(a, "destroy", "Crypto-shred a key: remove its material for good",
		`Destroy removes a key's material from its keyset for good; the metadata
keeps a tombstone with the time. Every value encrypted or tokenized under
the key is thereby crypto-shredded: readers show it as shredded
(mdtap:shred:v1:…) and carry on. There is no undo, and copies of the key
directory made before (backups, other nodes' Secret versions) still hold
the key until they are replaced.

It refuses the primary key: rotate or promote another first. Disable is the
reversible alternative.`,
		func(cmd *cobra.Command, dir string, id uint32) error { return keys.Destroy(cmd.Context(), dir, id) },
		"destroyed")
}

func newKeysRotateCmd(a *app) *cobra.Command {
	var dir, purpose string
	cmd := &cobra.Command{
		Use:   "rotate --dir DIR [--purpose aead|daead|prf|all]",
		Short: "Add a new primary key (single node); print its id",
		Long: `Rotate adds a new key and makes it primary at once, and prints the new key
id on stdout (with --purpose all, three lines in the order aead, daead,
prf). Older keys stay enabled, so values written before still decrypt.

This suits a single node. For a fleet, split it: 'mdtap keys add', let every
node reload the key directory, then 'mdtap keys promote'; otherwise nodes
that have not reloaded cannot read what the others write meanwhile.

What a rotation changes:

  aead   new values carry the new key id; nothing else changes.
  daead  every token is different from then on: the same value tokenizes
         differently before and after, so joins across the rotation need
         the audit to detokenize (reverse) the tokens and compare values.
  prf    every hash and blind index is different from then on: searches
         compute the index under every enabled PRF key (keep the old key
         enabled for as long as records hashed under it must be found).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDir(dir); err != nil {
				return err
			}
			var ps []keys.Purpose
			if purpose == "all" {
				ps = keys.Purposes()
			} else {
				p, err := keys.ParsePurpose(purpose)
				if err != nil {
					return usagef("--purpose: %v, or all", err)
				}
				ps = []keys.Purpose{p}
			}
			for _, p := range ps {
				id, err := keys.Rotate(cmd.Context(), dir, p)
				if err != nil {
					return err
				}
				if _, err := fmt.Fprintln(a.stdout, id); err != nil {
					return err
				}
			}
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&purpose, "purpose", string(keys.PurposeAEAD), "keyset to rotate: aead, daead, prf or all")
	return cmd
}

// keyJSON is one element of 'mdtap keys list --json'.
type keyJSON struct {
	Purpose string  `json:"purpose"`
	KeyID   uint32  `json:"key_id"`
	Status  string  `json:"status"`
	Created *string `json:"created"` // RFC 3339, UTC; null if unknown
}

func newKeysListCmd(a *app) *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list --dir DIR [--json]",
		Short: "List every key: purpose, id, status, creation time",
		Long: `List shows every key of the three keysets, destroyed ones included: its
purpose, key id, status and creation time (RFC 3339, UTC).

Statuses: primary (protects new values), enabled (decrypts old values; a
PRF key is searched), disabled (kept, unused until enabled), destroyed
(crypto-shredded, only the tombstone remains).

With --json it prints one JSON array of objects with the fields purpose,
key_id, status and created.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDir(dir); err != nil {
				return err
			}
			infos, err := keys.List(cmd.Context(), dir)
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]keyJSON, len(infos))
				for i, ki := range infos {
					out[i] = keyJSON{Purpose: string(ki.Purpose), KeyID: ki.KeyID, Status: ki.Status, Created: rfc3339(ki.Created)}
				}
				b, err := json.MarshalIndent(out, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stdout, "%s\n", b)
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PURPOSE\tKEY ID\tSTATUS\tCREATED\tCHANGED")
			for _, ki := range infos {
				created, changed := "-", ""
				if c := rfc3339(ki.Created); c != nil {
					created = *c
				}
				switch {
				case !ki.Destroyed.IsZero():
					changed = "destroyed " + *rfc3339(ki.Destroyed)
				case !ki.Disabled.IsZero() && ki.Status == keys.StatusDisabled:
					changed = "disabled " + *rfc3339(ki.Disabled)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", ki.Purpose, ki.KeyID, ki.Status, created, changed)
			}
			return tw.Flush()
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array of {purpose, key_id, status, created}")
	return cmd
}

func rfc3339(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

func newKeysPublishCmd(a *app) *cobra.Command {
	var dir, bucket string
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "publish --dir DIR --nats URL [--bucket NAME]",
		Short: "Copy the encrypted keysets to a NATS bucket that sidecars watch",
		Long: `Publish copies the key directory's three encrypted keysets and their
metadata files to a NATS key-value bucket (default mdtap_keys), one key per
file name, creating the bucket if needed. Sidecars started with
--keys nats://HOST:PORT/BUCKET --kek URI load their keys from it and reload
within moments of each publish, without a restart.

The keysets travel as they are on disk, wrapped by the KEK: the bucket never
holds plaintext key material, and the development KEK file (kek.json) is
never published. Nothing is published unless every keyset unwraps under its
KEK. Files the bucket already holds unchanged are not written again.

Run it after every change to the directory (rotate, add, promote, disable,
destroy, retire). For a fleet rotation: add, publish, wait, promote, publish.`,
		Example: `  mdtap keys rotate --dir keys && mdtap keys publish --dir keys --nats nats://nats:4222`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDir(dir); err != nil {
				return err
			}
			if err := nf.validate(); err != nil {
				return err
			}
			b, closeNC, err := openBucketCmd(cmd.Context(), a, &nf, bucket, stream.BucketConfig{
				Bucket: bucket, Description: "mdtap keysets (KEK-wrapped) and metadata, published by mdtap keys publish", History: 1,
			})
			if err != nil {
				return err
			}
			defer closeNC()
			where := stream.RedactURL(nf.url) + "/" + b.Name()
			res, err := keys.Publish(cmd.Context(), dir, natsKeysetStore{b: b, where: where})
			if err != nil {
				return err
			}
			for _, f := range res.Changed {
				fmt.Fprintln(a.stdout, f)
			}
			fmt.Fprintf(a.stderr, "mdtap: published the keysets of %s to %s (%d of %d files changed)\n", dir, where, len(res.Changed), len(res.Files))
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&bucket, "bucket", stream.DefaultKeysBucket, "NATS key-value `bucket` to publish to")
	nf.register(cmd.Flags())
	return cmd
}

// openBucketCmd connects for a one-shot command and opens a bucket
// (creating it with cfg when absent).
func openBucketCmd(ctx context.Context, a *app, nf *natsFlags, name string, cfg stream.BucketConfig) (*stream.Bucket, func(), error) {
	if name == "" {
		return nil, nil, usagef("--bucket is empty")
	}
	o := nf.options()
	o.FailFast = true
	nc, err := stream.Connect(o, a.log)
	if err != nil {
		return nil, nil, err
	}
	cfg.Bucket = name
	b, err := stream.OpenBucket(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return b, nc.Close, nil
}

func newKeysForgetCmd(a *app) *cobra.Command {
	var dir, subject, bucket string
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "forget --subject ID --dir DIR --nats URL [--bucket NAME]",
		Short: "Crypto-shred one data subject's values (consent withdrawal)",
		Long: `Forget destroys the data subject's own keysets (per-subject keys), for
consent withdrawal (전송요구 철회) or leaving the service (회원 탈퇴). ID is the
internal user id the client service sent as x-mdtap-subject.

The subject's blind index is computed under every enabled PRF key (a subject
tagged before a prf rotation has a keyset under the old index too), and the
keyset under each is erased from the NATS bucket (default mdtap_subjects):
every stored revision is deleted with its bytes overwritten, then the key is
purged. It prints how many keysets were destroyed.

Afterwards the subject's encrypt and tokenize values read as shredded
(mdtap:shred:v1:…) in reveal and audit; the records stay, with their
metadata (time, org, api, rsp_code, the subject's blind index) and hash
values, and every other subject's data is intact. Running sidecars drop
their cached copy within moments. Only --dir's prf keyset is read.

The id is personal data: give --subject - to read it from stdin instead of
the command line.`,
		Example: `  echo "$USER_ID" | mdtap keys forget --subject - --dir keys --nats nats://nats:4222`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDir(dir); err != nil {
				return err
			}
			if subject == "-" {
				line, err := bufio.NewReader(a.stdin).ReadString('\n')
				if err != nil && line == "" {
					return usagef("--subject -: no subject id on stdin")
				}
				subject = strings.TrimRight(line, "\r\n")
			}
			if subject == "" {
				return usagef("--subject is required: the subject's id (x-mdtap-subject), or - for stdin")
			}
			if err := nf.validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			set, err := keys.Load(ctx, dir, keys.PurposePRF)
			if err != nil {
				return err
			}
			indexes, err := redact.SubjectIndexes(set, subject)
			if err != nil {
				return err
			}
			b, closeNC, err := openBucketCmd(ctx, a, &nf, bucket, subjectsBucketConfig(bucket))
			if err != nil {
				return err
			}
			defer closeNC()
			n, err := keys.ForgetSubject(ctx, subjectStoreOf(b), indexes)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "destroyed %d subject keysets\n", n)
			fmt.Fprintf(a.stderr, "mdtap: searched under %d prf keys in %s/%s\n", len(indexes), stream.RedactURL(nf.url), b.Name())
			if infos, err := keys.List(ctx, dir); err == nil {
				for _, ki := range infos {
					if ki.Purpose == keys.PurposePRF && ki.Status == keys.StatusDisabled {
						fmt.Fprintf(a.stderr, "mdtap: warning: prf key %d is disabled, so a keyset under the subject's index for it was not looked for; enable it and run forget again\n", ki.KeyID)
					}
				}
			}
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().StringVar(&subject, "subject", "", "the data subject's `id` as sent in x-mdtap-subject, or - to read it from stdin (required)")
	cmd.Flags().StringVar(&bucket, "bucket", stream.DefaultSubjectsBucket, "NATS key-value `bucket` of the per-subject keysets")
	nf.register(cmd.Flags())
	return cmd
}

func newKeysRetireCmd(a *app) *cobra.Command {
	var dir, purpose, bucket string
	var olderThan time.Duration
	var dryRun bool
	var nf natsFlags
	cmd := &cobra.Command{
		Use:   "retire --dir DIR --older-than DURATION [--purpose P|all] [--dry-run] [--nats URL]",
		Short: "Destroy the keys whose period ended longer ago than the retention",
		Long: `Retire crypto-shreds every key whose period ended more than --older-than
ago: retention by key period. With keys rotated on a schedule (say
'mdtap keys rotate --purpose aead' monthly), each key protects one period's
values; retire destroys them once the retention has passed.

A key's period ends when another key is promoted over it (recorded in the
metadata; for older metadata, when the next key was created). The primary
key is never retired, whatever its age. Each destroyed key is printed
(purpose, key id, created, period end); --dry-run prints them and changes
nothing.

Per-subject keysets depend on main keys: each is wrapped by the aead key
that was primary when it was made, and stored under a blind index of a prf
key. With --nats (the bucket of the per-subject keysets, default
mdtap_subjects) retire first re-wraps the subject keysets wrapped by
retiring aead keys under the current primary, so the subjects' newer data
survives, and erases the subject keysets indexed under retiring prf keys
(their records are as old as the key's period). Without --nats, retiring
aead or prf keys when per-subject keys are in use shreds subjects' data
beyond the retention: give --nats.

Publish the directory afterwards if sidecars load it from NATS.`,
		Example: `  mdtap keys retire --dir keys --older-than 2160h --dry-run
  mdtap keys retire --dir keys --older-than 2160h --purpose aead --nats nats://nats:4222`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkDir(dir); err != nil {
				return err
			}
			if olderThan <= 0 {
				return usagef("--older-than is required: the retention, a positive duration (2160h is 90 days)")
			}
			var ps []keys.Purpose
			if purpose != "all" {
				p, err := keys.ParsePurpose(purpose)
				if err != nil {
					return usagef("--purpose: %v, or all", err)
				}
				ps = []keys.Purpose{p}
			}
			withNATS := cmd.Flags().Changed("nats")
			if withNATS {
				if err := nf.validate(); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			o := keys.RetireOptions{OlderThan: olderThan, Purposes: ps, DryRun: dryRun}
			var rewrapped, erased int
			if withNATS && !dryRun {
				// Loaded before Retire takes the directory's lock: the hook
				// runs under it.
				main, err := keys.Load(ctx, dir, keys.PurposeAEAD)
				if err != nil {
					return err
				}
				b, closeNC, err := openBucketCmd(ctx, a, &nf, bucket, subjectsBucketConfig(bucket))
				if err != nil {
					return err
				}
				defer closeNC()
				store := subjectStoreOf(b)
				o.BeforeDestroy = func(ctx context.Context, ks []keys.Retired) error {
					aeadIDs := map[uint32]bool{}
					for _, k := range ks {
						switch k.Purpose {
						case keys.PurposeAEAD:
							aeadIDs[k.KeyID] = true
						case keys.PurposePRF:
							n, err := keys.EraseSubjectsUnderPRF(ctx, store, k.KeyID)
							erased += n
							if err != nil {
								return err
							}
						}
					}
					if len(aeadIDs) == 0 {
						return nil
					}
					n, err := keys.RewrapSubjects(ctx, main, store, func(id uint32) bool { return aeadIDs[id] })
					rewrapped += n
					return err
				}
			}
			res, err := keys.Retire(ctx, dir, o)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PURPOSE\tKEY ID\tSTATUS\tCREATED\tPERIOD ENDED")
			for _, k := range res.Destroyed {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", k.Purpose, k.KeyID, k.Status, *rfc3339(k.Created), *rfc3339(k.PeriodEnd))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			verb := "destroyed"
			if dryRun {
				verb = "would destroy (dry run)"
			}
			fmt.Fprintf(a.stderr, "mdtap: %s %d keys whose period ended before %s\n", verb, len(res.Destroyed), time.Now().Add(-olderThan).UTC().Format(time.RFC3339))
			for _, k := range res.Unknown {
				fmt.Fprintf(a.stderr, "mdtap: note: %s key %d has no creation time in its metadata; left alone\n", k.Purpose, k.KeyID)
			}
			if withNATS && !dryRun {
				fmt.Fprintf(a.stderr, "mdtap: re-wrapped %d and erased %d per-subject keysets\n", rewrapped, erased)
			}
			if !withNATS && len(res.Destroyed) > 0 {
				for _, k := range res.Destroyed {
					if k.Purpose != keys.PurposeDAEAD {
						fmt.Fprintf(a.stderr, "mdtap: warning: without --nats, per-subject keysets were not re-wrapped or erased; if sidecars use per-subject keys, see 'mdtap keys retire --help'\n")
						break
					}
				}
			}
			return nil
		},
	}
	dirFlag(cmd, &dir)
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "retention: destroy keys whose period ended longer ago than this `duration` (e.g. 2160h) (required)")
	cmd.Flags().StringVar(&purpose, "purpose", "all", "keysets to retire: aead, daead, prf or all")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be destroyed; change nothing")
	cmd.Flags().StringVar(&bucket, "bucket", stream.DefaultSubjectsBucket, "NATS key-value `bucket` of the per-subject keysets (with --nats)")
	nf.register(cmd.Flags())
	return cmd
}
