package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap/internal/sim"
)

func newSimCmd(a *app) *cobra.Command {
	var (
		listen, caOut, clientCA string
		hosts                   []string
		opts                    sim.Options
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated MyData information provider (for tests, demos and benchmarks)",
		Long: `Serve a simulated MyData information provider over HTTPS (TLS 1.3): the OAuth
2.0 and integrated-auth endpoints, the certification-authority and portal
support APIs, and bank, card, invest, insurance, e-finance and telecom
resources, with deterministic synthetic customers. Its CA certificate is
written to --ca-out so clients can trust it.

Get a token with POST /oauth/2.0/token (any client id and secret are
accepted), then call a resource API with "Authorization: Bearer <token>" and
an x-api-tran-id header. The request header x-sim-fault injects faults:
429, 500, slow, reset, garbage, big=N.`,
		Example: `  mdtap sim --listen 127.0.0.1:9443 --ca-out ca.pem
  curl --cacert ca.pem https://127.0.0.1:9443/oauth/2.0/token \
    -d grant_type=client_credentials -d client_id=demo -d client_secret=demo -d scope=manage`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pool *x509.CertPool
			if clientCA != "" {
				pem, err := os.ReadFile(clientCA)
				if err != nil {
					return fmt.Errorf("read --client-ca: %w", err)
				}
				pool = x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return usagef("--client-ca %s holds no PEM certificate", clientCA)
				}
			}
			tlsCfg, caPEM, err := sim.NewTLSConfig(hosts, pool)
			if err != nil {
				return err
			}
			if caOut != "" {
				if err := os.WriteFile(caOut, caPEM, 0o644); err != nil {
					return fmt.Errorf("write --ca-out: %w", err)
				}
			}
			opts.Logger = a.log
			s := sim.New(opts)
			srv, err := sim.Start(listen, s, tlsCfg)
			if err != nil {
				return err
			}
			a.log.Info().Str("url", srv.URL()).Int("customers", s.Customers()).Bool("mtls", pool != nil).
				Msg("simulator serving")
			<-cmd.Context().Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:9443", "listen `address`")
	f.StringVar(&caOut, "ca-out", "", "write the simulator's CA certificate (PEM) to this `file`")
	f.StringSliceVar(&hosts, "host", []string{"127.0.0.1", "localhost"}, "certificate `name` (DNS name or IP), repeatable")
	f.StringVar(&clientCA, "client-ca", "", "require client certificates signed by the CA in this PEM `file` (mTLS)")
	f.Int64Var(&opts.Seed, "seed", sim.DefaultSeed, "data seed: the same seed gives the same customers")
	f.IntVar(&opts.Customers, "customers", sim.DefaultCustomers, "number of simulated customers")
	f.DurationVar(&opts.SlowDelay, "slow-delay", sim.DefaultSlowDelay, "delay of the x-sim-fault: slow fault")
	return cmd
}
