package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// CA file names in the CA directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// ErrExists is returned by InitCA when the directory already holds a CA.
var ErrExists = errors.New("already exists")

// CAValidity is how long a new MITM CA is valid.
const CAValidity = 5 * 365 * 24 * time.Hour

// InitCA creates the MITM CA in dir: an ECDSA P-256 key (ca.key, mode 0600)
// and a self-signed certificate (ca.crt) that client services must trust.
// It refuses to overwrite an existing CA unless force is set.
func InitCA(dir string, force bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create CA dir: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s: %w (use --force to replace it; every client then needs the new ca.crt)", p, ErrExists)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("generate CA serial: %w", err)
	}
	host, _ := os.Hostname()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mdtap MITM CA " + host, Organization: []string{"mdtap"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode CA key: %w", err)
	}
	if err := writeAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ErrKeyExposed is returned by LoadCA when ca.key is readable by others.
var ErrKeyExposed = errors.New("CA key is readable by other users")

// LoadCA reads the MITM CA from dir. It refuses a key file that other users
// can read; groupReadable reports a key the group can read (Kubernetes
// fsGroup makes Secret files so), which callers warn about.
func LoadCA(dir string) (ca *tls.Certificate, groupReadable bool, err error) {
	keyPath := filepath.Join(dir, CAKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, false, fmt.Errorf("load CA: %w (create one with: mdtap ca init --dir %s)", err, dir)
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil, false, fmt.Errorf("load CA: %s: %w (chmod 600 it)", keyPath, ErrKeyExposed)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CACertFile), keyPath)
	if err != nil {
		return nil, false, fmt.Errorf("load CA from %s: the certificate and key do not form a pair", dir)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, false, fmt.Errorf("load CA: %w", err)
		}
	}
	if !cert.Leaf.IsCA {
		return nil, false, fmt.Errorf("load CA: %s is not a CA certificate", CACertFile)
	}
	return &cert, fi.Mode().Perm()&0o040 != 0, nil
}
