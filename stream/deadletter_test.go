package stream

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mdtap/mdtap/internal/natstest"
)

// Records the stream refused for good (here: another stream held the
// subjects) are published by a replay once the cause is fixed, exactly
// once however often the replay runs.
func TestReplayDeadLetters(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream(t)
	ensureStream(t, js, StreamConfig{Name: "OTHER"})
	s := openTestSpool(t, SpoolOptions{})
	p := newSpoolPublisher(t, srv.Conn(t), s, PublisherOptions{}) // expects MDTAP
	for i := range 3 {
		mustPublish(t, p, testRecord(i))
	}
	flush(t, p)
	p.Close()

	files, err := ReadDeadLetters(s.dir)
	if err != nil || len(files.Records) != 3 || files.Damaged+files.Partial != 0 {
		t.Fatalf("ReadDeadLetters = %+v, %v; want 3 records", files, err)
	}
	for i, d := range files.Records {
		if d.Message.ID != testID(i) {
			t.Errorf("dead letter %d: id %s, want %s", i, d.Message.ID, testID(i))
		}
	}

	ctx := context.Background()
	nc := srv.Conn(t)
	// Not fixed yet: every record is refused again, and listed.
	rep, err := ReplayDeadLetters(ctx, nc, DefaultStreamName, s.dir, false)
	if err != nil || rep.Failed != 3 || rep.Published != 0 || rep.Failures[0].Reason != ReasonRejected {
		t.Fatalf("replay before the fix = %+v, %v; want 3 rejected", rep, err)
	}

	// The fix: the right stream holds the subjects. One record got there
	// another way already.
	if err := js.DeleteStream(ctx, "OTHER"); err != nil {
		t.Fatal(err)
	}
	str := ensureStream(t, js, StreamConfig{})
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: files.Records[1].Message.Subject, Data: files.Records[1].Message.Data,
		Header: nats.Header{jetstream.MsgIDHeader: []string{files.Records[1].Message.ID}}}); err != nil {
		t.Fatal(err)
	}
	if rep, err := ReplayDeadLetters(ctx, nc, DefaultStreamName, s.dir, true); err != nil || rep.Published != 0 || rep.Records != 3 {
		t.Fatalf("dry run = %+v, %v", rep, err)
	}
	rep, err = ReplayDeadLetters(ctx, nc, DefaultStreamName, s.dir, false)
	if err != nil || rep.Published != 2 || rep.Duplicate != 1 || rep.Failed != 0 {
		t.Fatalf("replay = %+v, %v; want 2 published, 1 duplicate", rep, err)
	}
	rep, err = ReplayDeadLetters(ctx, nc, DefaultStreamName, s.dir, false)
	if err != nil || rep.Skipped != 3 || rep.Published+rep.Duplicate+rep.Failed != 0 {
		t.Fatalf("second replay = %+v, %v; want all 3 skipped", rep, err)
	}
	if info, err := str.Info(ctx); err != nil || info.State.Msgs != 3 {
		t.Fatalf("stream holds %+v, %v; want 3 messages", info.State, err)
	}
}

// A dead-letter file cut mid-frame (a write in progress, a crash) reads up
// to the cut; damaged bytes are skipped and counted.
func TestReadDeadLettersDamage(t *testing.T) {
	dir := t.TempDir()
	dl := filepath.Join(dir, deadLetterDir)
	if err := os.MkdirAll(dl, 0o700); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), segMagic...)
	b = appendFrame(b, recordMsg(t, 0), false)
	junk := len(b)
	b = append(b, "not a frame"...)
	b = appendFrame(b, recordMsg(t, 1), true)
	cut := appendFrame(nil, recordMsg(t, 2), false)
	b = append(b, cut[:len(cut)/2]...)
	if err := os.WriteFile(filepath.Join(dl, "records-20261126T000000.000000000Z.spool"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDeadLetters(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 2 || got.Damaged != 1 || got.Partial != 1 || !got.Records[1].Degraded || got.Records[1].Offset <= int64(junk) {
		t.Fatalf("ReadDeadLetters = %+v", got)
	}
	if err := os.WriteFile(filepath.Join(dl, "records-x.spool"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDeadLetters(dir); err == nil {
		t.Error("a file without the spool header: got nil error")
	}
}
