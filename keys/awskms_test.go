package keys

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/kmstest"
)

// The aws-kms:// KEK against a local KMS API server: the whole life of a key
// directory, a KMS restart, and a KMS outage.
func TestAWSKMS(t *testing.T) {
	kms := kmstest.Start(t)
	kms.Setenv(t)
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "keys")

	if err := Init(ctx, dir, kms.KeyURI()); err != nil {
		t.Fatalf("Init(%s): %v", kms.KeyURI(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kek.json")); err == nil {
		t.Error("Init with a KMS KEK wrote a local kek.json")
	}
	mb, _ := os.ReadFile(metaPath(dir, PurposeAEAD))
	if !bytes.Contains(mb, []byte(`"kek_uri": "`+kms.KeyURI()+`"`)) {
		t.Errorf("aead.meta.json does not record the KMS URI:\n%s", mb)
	}

	s := load(t, dir)
	ad := []byte("record-1\x00$.card_num")
	ctOld, err := s.Encrypt([]byte("4111-1111"), ad)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Tokenize([]byte("4111-1111"), ad)
	_, sum, _ := s.Hash([]byte("subject-1"))

	id, err := Rotate(ctx, dir, PurposeAEAD)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if err := s.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	ctNew, _ := s.Encrypt([]byte("4111-2222"), ad)
	if got, _ := mdtap.TinkKeyID(ctNew); got != id {
		t.Errorf("key id after Rotate: got %d, want %d", got, id)
	}

	// KMS restarts; a new process loads the same keys.
	kms.Restart()
	s2 := load(t, dir)
	for ct, want := range map[*[]byte]string{&ctOld: "4111-1111", &ctNew: "4111-2222"} {
		if got, err := s2.Decrypt(*ct, ad); err != nil || string(got) != want {
			t.Errorf("Decrypt after restart: got %q, %v; want %q", got, err, want)
		}
	}
	if got, _ := s2.Tokenize([]byte("4111-1111"), ad); !bytes.Equal(got, tok) {
		t.Error("Tokenize after restart: token changed")
	}
	if _, got, _ := s2.Hash([]byte("subject-1")); !bytes.Equal(got, sum) {
		t.Error("Hash after restart: sum changed")
	}
	if got := len(list(t, dir)); got != 4 {
		t.Errorf("List: got %d keys, want 4", got)
	}
	pieces := keyPieces(t, dir)

	// KMS is down: loads and changes fail clearly, loaded keys keep working.
	kms.Stop()
	start := time.Now()
	_, err = Load(ctx, dir)
	if err == nil {
		t.Fatal("Load with KMS down: got nil error")
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Load with KMS down took %s", took)
	}
	msg := err.Error()
	t.Logf("Load with KMS down (%s): %v", time.Since(start).Round(time.Millisecond), err)
	for _, want := range []string{"aead.keyset.json", kms.KeyURI(), "KMS: Decrypt", "connection refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Load with KMS down: error %q lacks %q", msg, want)
		}
	}
	var errs []error
	errs = append(errs, err, s.Reload(ctx), second(Rotate(ctx, dir, PurposeAEAD)), second(List(ctx, dir)))
	for _, err := range errs {
		if err == nil {
			t.Error("an operation with KMS down succeeded")
			continue
		}
		for _, secret := range []string{kmstest.SecretAccessKey, kmstest.AccessKeyID} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the AWS credentials", err)
			}
		}
		assertNoPieces(t, "error", err.Error(), pieces)
	}
	if got, err := s.Decrypt(ctOld, ad); err != nil || string(got) != "4111-1111" {
		t.Errorf("Decrypt with the loaded keys while KMS is down: %q, %v", got, err)
	}

	// A load gives up when its context does.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	// Either the SDK's retries end first (connection refused) or the deadline.
	if _, err := Load(short, dir); err == nil || (!errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "connection refused")) {
		t.Errorf("Load with a short deadline: got %v", err)
	}

	kms.Restart()
	if err := s.Reload(ctx); err != nil {
		t.Errorf("Reload once KMS is back: %v", err)
	}
}

// A KMS key the KEK URI names but KMS does not have: Init writes nothing.
func TestAWSKMSUnknownKey(t *testing.T) {
	kms := kmstest.Start(t)
	kms.Setenv(t)
	dir := filepath.Join(t.TempDir(), "keys")
	uri := strings.Replace(kms.KeyURI(), kmstest.KeyID, "00000000-0000-0000-0000-000000000000", 1)
	err := Init(t.Context(), dir, uri)
	if err == nil || !strings.Contains(err.Error(), "NotFoundException") {
		t.Errorf("Init with an unknown KMS key: got %v, want NotFoundException", err)
	}
	if _, err := os.Stat(keysetPath(dir, PurposeAEAD)); err == nil {
		t.Error("a failed Init wrote a keyset")
	}
}
