package main

import (
	"github.com/spf13/pflag"

	"github.com/mdtap/mdtap/stream"
)

// natsFlags are the NATS connection flags, the same on every command that
// talks to NATS (proxy, archive, stream init). Secrets are better given in
// the environment (MDTAP_<COMMAND>_NATS_PASSWORD, …) or a credentials file
// than on a command line that other users can list.
type natsFlags struct {
	url      string
	creds    string
	nkey     string
	user     string
	password string
	token    string
	ca       string
	cert     string
	key      string
	name     string
	inbox    string
}

func (f *natsFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "nats", stream.DefaultURL, "NATS server `URL`, or several comma-separated (nats://, tls://)")
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials `file` (user JWT and nkey seed)")
	fs.StringVar(&f.nkey, "nats-nkey", "", "NATS nkey seed `file`")
	fs.StringVar(&f.user, "nats-user", "", "NATS `user` name")
	fs.StringVar(&f.password, "nats-password", "", "NATS `password` (prefer the environment variable)")
	fs.StringVar(&f.token, "nats-token", "", "NATS authentication `token` (prefer the environment variable)")
	fs.StringVar(&f.ca, "nats-ca", "", "PEM `file` of the CAs that sign the NATS server's certificate (implies TLS)")
	fs.StringVar(&f.cert, "nats-cert", "", "client certificate PEM `file` for NATS mTLS, with --nats-key")
	fs.StringVar(&f.key, "nats-key", "", "client private key PEM `file` for NATS mTLS, with --nats-cert")
	fs.StringVar(&f.name, "nats-name", stream.DefaultConnName, "connection `name` shown in NATS server monitoring")
	fs.StringVar(&f.inbox, "nats-inbox-prefix", "", "reply subject `prefix` instead of _INBOX, so NATS permissions can keep each role to its own replies")
}

// validate reports conflicting flags as usage errors, naming the flags.
func (f *natsFlags) validate() error {
	var auth []string
	for _, a := range []struct {
		set  bool
		flag string
	}{
		{f.creds != "", "--nats-creds"},
		{f.nkey != "", "--nats-nkey"},
		{f.user != "" || f.password != "", "--nats-user/--nats-password"},
		{f.token != "", "--nats-token"},
	} {
		if a.set {
			auth = append(auth, a.flag)
		}
	}
	switch {
	case f.url == "":
		return usagef("--nats is empty: give the NATS server URL")
	case len(auth) > 1:
		return usagef("%s and %s: give one way to authenticate", auth[0], auth[1])
	case f.password != "" && f.user == "":
		return usagef("--nats-password needs --nats-user")
	case f.cert != "" && f.key == "":
		return usagef("--nats-cert needs --nats-key")
	case f.key != "" && f.cert == "":
		return usagef("--nats-key needs --nats-cert")
	}
	return nil
}

// options returns the connection options for stream.Connect.
func (f *natsFlags) options() stream.ConnOptions {
	return stream.ConnOptions{
		URL:       f.url,
		Name:      f.name,
		CredsFile: f.creds,
		NKeyFile:  f.nkey,
		User:      f.user,
		Password:  f.password,
		Token:     f.token,
		CAFile:    f.ca,
		CertFile:  f.cert,
		KeyFile:   f.key,

		InboxPrefix: f.inbox,
	}
}
