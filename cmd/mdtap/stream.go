package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap/stream"
)

// streamInitTimeout bounds connecting and provisioning in `stream init`.
const streamInitTimeout = 30 * time.Second

// newStreamCmd is the `mdtap stream` group: the JetStream stream that carries
// protected records from the sidecars to the archivers.
func newStreamCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stream",
		Short: "Manage the JetStream stream that carries protected records",
		Long: `Sidecars publish protected records to a JetStream stream (default MDTAP) on
subjects mdtap.records.<sector>.<org>; archivers read them through one
durable consumer (default mdtap-archive). See docs/stream.md.`,
	}
	cmd.AddCommand(newStreamInitCmd(a), newStreamReplayCmd(a))
	return cmd
}

func newStreamReplayCmd(a *app) *cobra.Command {
	var (
		nf     natsFlags
		spool  string
		name   string
		dryRun bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Publish a spool's dead letters once their cause is fixed",
		Long: `Publish the records of a spool's dead-letter directory (DIR/deadletter:
records the stream refused for good, such as too large for the server or
rejected by a misconfigured stream) to the stream, each with its record id as
Nats-Msg-Id, once the cause is fixed. Each published record is noted in
DIR/deadletter/replayed.jsonl, so running it again publishes nothing twice;
the dead-letter files stay for you to delete. It only reads the spool, so it
may run beside the sidecar that owns it.

Exit status: 0 every record published (or already there), 1 some still
refused (listed by id and reason), 2 it could not run.`,
		Example: `  mdtap stream replay --spool /var/lib/mdtap/spool --nats nats://nats:4222 --dry-run
  mdtap stream replay --spool /var/lib/mdtap/spool --nats nats://nats:4222`,
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if spool == "" {
				return usagef("--spool is required")
			}
			if st, err := os.Stat(spool); err != nil || !st.IsDir() {
				return fmt.Errorf("spool %s: no such directory", spool)
			}
			if err := nf.validate(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), streamInitTimeout)
			defer cancel()
			var nc *nats.Conn
			if !dryRun {
				o := nf.options()
				o.FailFast = true
				var err error
				if nc, err = stream.Connect(o, a.log); err != nil {
					return err
				}
				defer nc.Close()
			}
			rep, err := stream.ReplayDeadLetters(ctx, nc, name, spool, dryRun)
			if err != nil {
				return err
			}
			if asJSON {
				if err := json.NewEncoder(a.stdout).Encode(rep); err != nil {
					return err
				}
			} else {
				if dryRun {
					fmt.Fprintf(a.stdout, "dead letters: %d records, %d to publish, %d replayed before",
						rep.Records, rep.Records-rep.Skipped, rep.Skipped)
				} else {
					fmt.Fprintf(a.stdout, "dead letters: %d records, %d published, %d already in the stream, %d replayed before, %d refused",
						rep.Records, rep.Published, rep.Duplicate, rep.Skipped, rep.Failed)
				}
				fmt.Fprintf(a.stdout, " (damaged runs %d, partial frames %d)\n", rep.Damaged, rep.Partial)
				for _, f := range rep.Failures {
					fmt.Fprintf(a.stdout, "  refused %s (%s@%d): %s\n", f.ID, f.File, f.Offset, f.Reason)
				}
			}
			if rep.Failed > 0 {
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
	f := cmd.Flags()
	nf.register(f)
	f.StringVar(&spool, "spool", "", "the sidecar's spool `DIR` (its --spool)")
	f.StringVar(&name, "stream", stream.DefaultStreamName, "stream `name` the records must land in")
	f.BoolVar(&dryRun, "dry-run", false, "count what would be published; connect to nothing")
	f.BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	return cmd
}

func newStreamInitCmd(a *app) *cobra.Command {
	var (
		nf       natsFlags
		cfg      = stream.DefaultStreamConfig()
		maxBytes = maxBytesFlag(stream.Unlimited)
		consumer string
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create or update the records stream and the archivers' consumer",
		Long: `Create the records stream and the archivers' durable consumer, or bring
existing ones to the given settings, so that sidecars need only the right to
publish. Run it again to change replicas, max bytes or the duplicate window.

The stream: subjects mdtap.records.>, file storage, work-queue retention (a
record stays until the archivers acknowledge it, even before they first
connect), discard new (a full stream refuses new records, which the sidecars
then spool, rather than dropping unarchived ones), no max age, and de-
duplication on the record id within the duplicate window.

Retention and storage cannot change on an existing stream: init refuses a
stream of that name created otherwise, and says which setting differs.`,
		Example: `  mdtap stream init --nats nats://nats:4222
  mdtap stream init --nats tls://nats:4222 --nats-creds admin.creds --replicas 3 --max-bytes 200GiB`,
		Args: wrapArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := nf.validate(); err != nil {
				return err
			}
			switch {
			case cfg.Replicas < 1 || cfg.Replicas > 5:
				return usagef("--replicas %d: want 1 to 5", cfg.Replicas)
			case cfg.Duplicates <= 0:
				return usagef("--dup-window %s: want a positive duration, like 2h", cfg.Duplicates)
			}
			cfg.MaxBytes = int64(maxBytes)
			if err := cfg.Validate(); err != nil {
				return usagef("--stream %q: %v", cfg.Name, err)
			}
			if consumer == "" || strings.ContainsAny(consumer, " \t.*>/\\") {
				return usagef("--consumer %q: want a name without whitespace, '.', '*', '>', '/' or '\\'", consumer)
			}

			ctx, cancel := context.WithTimeout(cmd.Context(), streamInitTimeout)
			defer cancel()
			o := nf.options()
			o.FailFast = true // a one-shot command: say so now if NATS is not there
			nc, err := stream.Connect(o, a.log)
			if err != nil {
				return err
			}
			defer nc.Close()
			sum, err := stream.Provision(ctx, nc, cfg, consumer)
			if errors.Is(err, stream.ErrIncompatibleStream) {
				fmt.Fprintf(a.stderr, "mdtap: error: %v\n", err)
				fmt.Fprintf(a.stderr, "hint: archive what the stream holds, then delete it (nats stream rm %s), or choose another --stream name\n", cfg.Name)
				return &exitError{code: exitFailure}
			}
			if err != nil {
				return err
			}
			return writeStreamSummary(a.stdout, sum)
		},
	}
	f := cmd.Flags()
	nf.register(f)
	f.StringVar(&cfg.Name, "stream", stream.DefaultStreamName, "stream `name`")
	f.IntVar(&cfg.Replicas, "replicas", stream.DefaultReplicas, "stream replicas, 1 to 5 (3 in a cluster)")
	f.Var(&maxBytes, "max-bytes", "stream size cap, like 200GiB, or unlimited (-1); when full, sidecars spool")
	f.DurationVar(&cfg.Duplicates, "dup-window", stream.DefaultDuplicates, "duplicate window: a record published again within it is stored once")
	f.StringVar(&consumer, "consumer", stream.DefaultConsumerName, "the archivers' durable consumer `name`")
	return cmd
}

// maxBytesFlag is --max-bytes: a size with units (as byteSize), or
// "unlimited" or -1 for no cap.
type maxBytesFlag int64

func (m *maxBytesFlag) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "-1", "unlimited":
		*m = maxBytesFlag(stream.Unlimited)
		return nil
	}
	var b byteSize
	if err := b.Set(s); err != nil || b == 0 {
		return fmt.Errorf("size %q: want a size with an optional unit, like 200GiB, or unlimited", s)
	}
	*m = maxBytesFlag(b)
	return nil
}

func (m *maxBytesFlag) String() string {
	if *m < 0 {
		return "unlimited"
	}
	return humanize.IBytes(uint64(*m))
}

func (m *maxBytesFlag) Type() string { return "size" }

func writeStreamSummary(w io.Writer, s stream.Summary) error {
	verb := "updated"
	if s.Created {
		verb = "created"
	}
	maxBytes := "unlimited"
	if s.MaxBytes >= 0 {
		maxBytes = humanize.IBytes(uint64(s.MaxBytes))
	}
	maxAge := "none"
	if s.MaxAge > 0 {
		maxAge = s.MaxAge.String()
	}
	maxDeliver := "unlimited"
	if s.MaxDeliver > 0 {
		maxDeliver = fmt.Sprint(s.MaxDeliver)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "stream %s %s\n", s.Stream, verb)
	fmt.Fprintf(tw, "  subjects\t%s\n", strings.Join(s.Subjects, ", "))
	fmt.Fprintf(tw, "  storage\t%s\n", s.Storage)
	fmt.Fprintf(tw, "  retention\t%s\n", s.Retention)
	fmt.Fprintf(tw, "  discard\t%s\n", s.Discard)
	fmt.Fprintf(tw, "  max age\t%s\n", maxAge)
	fmt.Fprintf(tw, "  replicas\t%d\n", s.Replicas)
	fmt.Fprintf(tw, "  max bytes\t%s\n", maxBytes)
	fmt.Fprintf(tw, "  dup window\t%s\n", s.Duplicates)
	fmt.Fprintf(tw, "  messages\t%d (%s)\n", s.Messages, humanize.IBytes(s.Bytes))
	fmt.Fprintf(tw, "consumer %s ready\n", s.Consumer)
	fmt.Fprintf(tw, "  kind\tdurable pull, explicit ack\n")
	fmt.Fprintf(tw, "  filter\t%s\n", s.Filter)
	fmt.Fprintf(tw, "  ack wait\t%s\n", s.AckWait)
	fmt.Fprintf(tw, "  max ack pending\t%d\n", s.MaxAckPending)
	fmt.Fprintf(tw, "  max deliver\t%s\n", maxDeliver)
	fmt.Fprintf(tw, "  pending\t%d\n", s.Pending)
	return tw.Flush()
}
