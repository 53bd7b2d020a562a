// Command localkms serves the AWS KMS API of github.com/nsmithuk/local-kms on
// a loopback address, for mdtap's tests of aws-kms:// key-encryption keys.
//
// local-kms's own main listens on every interface; this wrapper serves its
// exported request handler on the address given with -listen (127.0.0.1:0
// picks a free port) and seeds one symmetric key, so a test knows its ARN
// before the first request:
//
//	localkms -listen 127.0.0.1:0 -data DIR -region ap-northeast-2 -account 111122223333 -key-id ID
//
// It prints the address it listens on as the first line of stdout, the key's
// ARN as the second, then serves until SIGINT or SIGTERM. Keys live in a
// LevelDB store in -data (a temporary directory removed on exit if none is
// given), so a restart on the same -data keeps them. Any credentials are
// accepted. Never use it outside tests: it keeps key material in clear.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	kms "github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/cmk"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "localkms: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "`address` to listen on; keep it on loopback")
	dataDir := flag.String("data", "", "`directory` of the key store (default: a temporary one, removed on exit)")
	region := flag.String("region", "ap-northeast-2", "AWS `region` of the key ARNs")
	account := flag.String("account", "111122223333", "AWS `account` id of the key ARNs")
	keyID := flag.String("key-id", "6c1c43b4-9a8b-4b4e-9d5a-3f2a1b0c9d8e", "`id` of the symmetric key to seed")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", *listen, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-listen %q: not a loopback address", *listen)
	}

	dir := *dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "localkms-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	config.AWSRegion = *region
	config.AWSAccountId = *account
	config.DatabasePath = dir

	db, err := openDatabase(dir)
	if err != nil {
		return err
	}
	defer db.Close()
	arn, err := seedKey(db, *keyID)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { kms.HandleRequest(w, r, db) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Printf("%s\n%s\n", ln.Addr(), arn)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openDatabase opens the LevelDB store; local-kms panics when it cannot.
func openDatabase(dir string) (db *data.Database, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("open key store %s: %v", dir, r)
		}
	}()
	return data.NewDatabase(dir), nil
}

// seedKey stores an enabled AES key of the given id, as local-kms's
// CreateKey would, unless the store already has it, and returns its ARN.
func seedKey(db *data.Database, id string) (string, error) {
	arn := config.ArnPrefix() + "key/" + id
	if _, err := db.LoadKey(arn); err == nil {
		return arn, nil
	}
	key := cmk.NewAesKey(cmk.KeyMetadata{
		Arn:          arn,
		KeyId:        id,
		AWSAccountId: config.AWSAccountId,
		CreationDate: time.Now().Unix(),
		Enabled:      true,
		KeyManager:   "CUSTOMER",
		KeyState:     cmk.KeyStateEnabled,
		Origin:       cmk.KeyOriginAwsKms,
	}, defaultPolicy(), cmk.KeyOriginAwsKms)
	if err := db.SaveKey(key); err != nil {
		return "", fmt.Errorf("seed key %s: %w", id, err)
	}
	return arn, nil
}

func defaultPolicy() string {
	return fmt.Sprintf(`{"Id":"key-default-policy","Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":"kms:*","Resource":"*"}]}`, config.AWSAccountId)
}
