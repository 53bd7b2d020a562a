package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tink-crypto/tink-go-awskms/v3/integration/awskms"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// KEK URI schemes. A key-encryption key wraps the three keysets; its URI is
// recorded in each metadata file.
const (
	// SchemeLocal names a development KEK: a cleartext Tink AES256_GCM keyset
	// in a file of mode 0600, local://PATH. A relative PATH is relative to
	// DIR, so a key directory can be moved or mounted elsewhere whole; an
	// absolute one is written local:///abs/path.
	SchemeLocal = "local://"
	// SchemeAWSKMS names an AWS KMS key, aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID.
	// The SDK's standard configuration applies: credentials from the
	// environment or shared files, AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL to
	// reach another endpoint. The region is the ARN's.
	SchemeAWSKMS = "aws-kms://"
	// SchemeHCVault is planned (HashiCorp Vault transit), not supported yet.
	SchemeHCVault = "hcvault://"
)

// DefaultKEKURI is the KEK Init uses when given none: DIR/kek.json.
const DefaultKEKURI = SchemeLocal + defaultKEKFile

const supportedKEKs = "local://PATH or aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID"

// checkKEKURI validates a KEK URI without touching the KEK.
func checkKEKURI(uri string) error {
	switch {
	case strings.HasPrefix(uri, SchemeLocal):
		if strings.TrimPrefix(uri, SchemeLocal) == "" {
			return fmt.Errorf("KEK URI %q: no path", uri)
		}
		return nil
	case strings.HasPrefix(uri, SchemeAWSKMS):
		if !strings.HasPrefix(uri, SchemeAWSKMS+"arn:aws") || strings.Count(uri, ":") < 6 {
			return fmt.Errorf("KEK URI %q: want aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID", uri)
		}
		return nil
	case strings.HasPrefix(uri, SchemeHCVault):
		return fmt.Errorf("KEK URI scheme hcvault:// is planned but not supported yet: use %s", supportedKEKs)
	}
	scheme, _, ok := strings.Cut(uri, "://")
	if !ok {
		return fmt.Errorf("KEK URI %q has no scheme: use %s", uri, supportedKEKs)
	}
	return fmt.Errorf("unsupported KEK URI scheme %q: use %s", scheme+"://", supportedKEKs)
}

// localKEKPath resolves a local:// URI against dir.
func localKEKPath(dir, uri string) string {
	p := strings.TrimPrefix(uri, SchemeLocal)
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// openKEK returns the key-encryption AEAD named by uri. With create, a
// missing local KEK file is generated.
func openKEK(ctx context.Context, dir, uri string, create bool) (tink.AEADWithContext, error) {
	if err := checkKEKURI(uri); err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(uri, SchemeLocal):
		path := localKEKPath(dir, uri)
		if create {
			if err := createLocalKEK(path); err != nil {
				return nil, err
			}
		}
		a, err := readLocalKEK(path)
		if err != nil {
			return nil, err
		}
		return contextAEAD{a}, nil
	case strings.HasPrefix(uri, SchemeAWSKMS):
		remote, err := awskms.NewAEADWithContext(ctx, strings.TrimPrefix(uri, SchemeAWSKMS))
		if err != nil {
			return nil, fmt.Errorf("KEK %s: %w", uri, err)
		}
		// Envelope encryption: a fresh AES256_GCM key per write encrypts the
		// keyset and KMS wraps only that key, so a keyset may outgrow KMS's
		// 4 KiB plaintext limit.
		env, err := aead.NewKMSEnvelopeAEADWithContext(aead.AES256GCMKeyTemplate(), remote)
		if err != nil {
			return nil, fmt.Errorf("KEK %s: %w", uri, err)
		}
		return env, nil
	}
	return nil, fmt.Errorf("unsupported KEK URI %q", uri) // unreachable after checkKEKURI
}

// createLocalKEK writes a new cleartext AES256_GCM keyset to path (mode
// 0600) unless the file exists. It never replaces an existing KEK.
func createLocalKEK(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local KEK %s: %w", path, err)
	}
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return fmt.Errorf("create local KEK: %w", err)
	}
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&buf)); err != nil {
		return fmt.Errorf("create local KEK: %w", err)
	}
	buf.WriteByte('\n')
	// writeFileNew fails if another process created the KEK meanwhile;
	// then that one is the KEK.
	if err := writeFileNew(path, buf.Bytes()); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create local KEK: %w", err)
	}
	return nil
}

// readLocalKEK reads a local KEK file. Its errors never quote the file: a
// parse error could otherwise carry a piece of the key.
func readLocalKEK(path string) (tink.AEAD, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read local KEK: %w", err)
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(b)))
	if err != nil {
		return nil, fmt.Errorf("read local KEK %s: not a Tink JSON keyset", path)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("read local KEK %s: not a Tink AEAD keyset", path)
	}
	return a, nil
}

// contextAEAD adapts a local AEAD to the context-taking interface a KMS
// AEAD has.
type contextAEAD struct{ a tink.AEAD }

func (c contextAEAD) EncryptWithContext(_ context.Context, plaintext, associatedData []byte) ([]byte, error) {
	return c.a.Encrypt(plaintext, associatedData)
}

func (c contextAEAD) DecryptWithContext(_ context.Context, ciphertext, associatedData []byte) ([]byte, error) {
	return c.a.Decrypt(ciphertext, associatedData)
}
