package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"crypto/tls"
	"crypto/x509"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/internal/leakcheck"
	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/simclient"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/proxy"
	"github.com/mdtap/mdtap/stream"
)

// demoReport is what `mdtap demo` prints (--json: as one object).
type demoReport struct {
	DataDir     string         `json:"data_dir"`
	Exchanges   int64          `json:"exchanges"`
	Records     int            `json:"records"`
	Objects     int            `json:"objects"`
	Bytes       int64          `json:"bytes"`
	RecordBytes int64          `json:"record_bytes"`
	Sectors     map[string]int `json:"sectors"`
	Chains      []string       `json:"chains"`
	ChainOK     bool           `json:"chain_ok"`
	Scanned     int            `json:"scanned_files"`
	Checked     int            `json:"sensitive_values_checked"`
	Leaks       int            `json:"leaks"`
	LeakFiles   []string       `json:"leak_files,omitempty"`
	Seconds     float64        `json:"seconds"`
}

func newDemoCmd(a *app) *cobra.Command {
	var (
		dataDir  string
		requests int64
		asJSON   bool
		policy   string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline on one machine and show that the archive holds no plaintext",
		Long: `Start, in one process, an embedded NATS server with JetStream, the MyData
simulator, the capture proxy and the archiver (to a local directory), with
keys and a CA generated under the data dir; send realistic exchanges across
every sector through the proxy; wait until all are archived; then report what
was captured and check every file under the data dir for the simulator's
sensitive values in clear (raw, JSON-escaped, URL-escaped, base64).

  simulated client ──▶ proxy ──▶ simulator (HTTPS, TLS 1.3)
                         │ protect
                         ▼
                   embedded JetStream ──▶ archiver ──▶ DATA/archive

Exits 0 when every exchange is archived and no sensitive value leaked.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if requests <= 0 {
				return usagef("--requests must be positive")
			}
			rep, err := runDemo(cmd.Context(), a, dataDir, requests, policy)
			if rep != nil {
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					enc.Encode(rep)
				} else {
					printDemoReport(a.stdout, rep)
				}
			}
			if err != nil {
				return err
			}
			if rep.Leaks > 0 {
				return &exitError{code: exitFailure, err: fmt.Errorf("%d sensitive values found in clear under %s", rep.Leaks, rep.DataDir)}
			}
			if int64(rep.Records) != rep.Exchanges {
				return &exitError{code: exitFailure, err: fmt.Errorf("%d of %d exchanges archived", rep.Records, rep.Exchanges)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "", "data `dir` to keep everything in (default: a temporary dir, removed afterwards)")
	cmd.Flags().Int64Var(&requests, "requests", 200, "exchanges to send")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	cmd.Flags().StringVar(&policy, "policy", "", "policy to protect with (default builtin): try a policy file and see what its leak check says")
	return cmd
}

func runDemo(ctx context.Context, a *app, dataDir string, requests int64, policy string) (*demoReport, error) {
	start := time.Now()
	if dataDir == "" {
		tmp, err := os.MkdirTemp("", "mdtap-demo-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		dataDir = tmp
	}
	dataDir, _ = filepath.Abs(dataDir)
	dir := func(name string) string { return filepath.Join(dataDir, name) }
	// The demo's own parts log only warnings and errors, so the report stands out.
	log := a.log.Level(maxLevel(a.log.GetLevel()))
	quiet := *a
	quiet.log = log

	ns, err := stream.StartEmbedded(dir("nats"), 0)
	if err != nil {
		return nil, err
	}
	defer ns.Shutdown()
	if _, err := os.Stat(filepath.Join(dir("keys"), "aead.keyset.json")); err != nil {
		if err := keys.Init(ctx, dir("keys"), ""); err != nil {
			return nil, err
		}
	}
	if err := proxy.InitCA(dir("ca"), true); err != nil {
		return nil, err
	}

	s := sim.New(sim.Options{Customers: 100})
	tlsCfg, simCA, err := sim.NewTLSConfig(nil, nil)
	if err != nil {
		return nil, err
	}
	simSrv, err := sim.Start("127.0.0.1:0", s, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer simSrv.Close()
	if err := os.WriteFile(dir("sim-ca.pem"), simCA, 0o644); err != nil {
		return nil, err
	}

	ports, err := freeAddrs(3)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	pc := proxyConfig{
		listen: ports[0], adminListen: ports[1], caDir: dir("ca"), keyDir: dir("keys"), service: "demo", policy: policy,
		streamName: stream.DefaultStreamName, createStream: true, allow: []string{strings.TrimPrefix(simSrv.URL(), "https://")},
		upstreamCA: dir("sim-ca.pem"), upstreamMinTLS: "1.3", maxCapture: proxy.DefaultMaxCaptureBytes,
		queueSize: 10000, queueMaxBytes: 256 << 20, shutdownGrace: 20 * time.Second,
		spoolDir: dir("spool"), spoolMaxBytes: byteSize(stream.DefaultSpoolMaxBytes), spoolFsync: string(stream.FsyncBatch), onFull: "fail-open",
	}
	pc.nats.url = ns.URL()
	ac := archiveConfig{streamName: stream.DefaultStreamName, consumer: stream.DefaultConsumerName,
		storeURL: "file://" + dir("archive"), createBucket: true, createStream: true, chain: "demo", headsBucket: stream.DefaultHeadsBucket,
		adminListen: ports[2], batchBytes: archive.DefaultBatchMaxBytes, batchRecords: archive.DefaultBatchMaxRecords, batchAge: 500 * time.Millisecond}
	ac.nats.url = ns.URL()
	// A part that stops early (a bad setting) ends the demo at once.
	died := make(chan struct{})
	var dieOnce sync.Once
	start2 := func(fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn()
			errs <- err
			if runCtx.Err() == nil {
				dieOnce.Do(func() { close(died) })
			}
		}()
	}
	start2(func() error { return runProxy(runCtx, &quiet, pc, nil) })
	start2(func() error { return runArchive(runCtx, &quiet, ac) })
	shutdown := func() error {
		stop()
		wg.Wait()
		close(errs)
		var all []error
		for err := range errs {
			all = append(all, err)
		}
		return errors.Join(all...)
	}
	fail := func(err error) (*demoReport, error) {
		return nil, errors.Join(err, shutdown())
	}
	for _, addr := range []string{ports[1], ports[2]} {
		if err := waitReady(ctx, died, "http://"+addr+"/readyz", 30*time.Second); err != nil {
			return fail(err)
		}
	}

	// Traffic: customers walk every API of every institution until the budget
	// is spent.
	mitm, err := os.ReadFile(filepath.Join(dir("ca"), proxy.CACertFile))
	if err != nil {
		return fail(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mitm)
	proxyURL, _ := url.Parse("http://" + ports[0])
	client := simclient.New(simSrv.URL(), &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 4}})
	client.Sim = s
	client.MaxExchanges = requests
	var customers []int
	// Customer 0 holds the simulator's thousand-row lists; start after it, so
	// a few walks cover every sector.
	for cust := 1; client.Exchanges() < requests; cust++ {
		customers = append(customers, cust%s.Customers())
		client.Header = http.Header{"X-Mdtap-Subject": {fmt.Sprintf("demo-user-%04d", cust)}}
		if err := client.Walk(ctx, cust%s.Customers(), 500); err != nil && !errors.Is(err, simclient.ErrBudget) {
			return fail(fmt.Errorf("traffic: %w", err))
		}
	}

	store, err := archive.NewFileStore(dir("archive"))
	if err != nil {
		return fail(err)
	}
	rep := &demoReport{DataDir: dataDir, Exchanges: client.Exchanges(), Sectors: map[string]int{}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := summarizeArchive(ctx, store, rep); err != nil {
			return fail(err)
		}
		if int64(rep.Records) >= rep.Exchanges || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := shutdown(); err != nil {
		return rep, err
	}
	ns.Shutdown()
	rep.ChainOK = true
	if chains, err := archive.ListChains(ctx, store); err == nil {
		rep.Chains = chains
		for _, ch := range chains {
			r, err := archive.VerifyChain(ctx, store, nil, ch)
			if err != nil || !r.OK() {
				rep.ChainOK = false
			}
		}
	}

	// The self-check: the simulator's sensitive values (and the subject ids
	// the client sent) must not appear in clear anywhere under the data dir.
	values := s.SensitiveValues(customers...)
	for _, c := range customers {
		values = append(values, fmt.Sprintf("demo-user-%04d", c))
	}
	scanner := leakcheck.New(values)
	files, findings, err := scanner.ScanDir(dataDir)
	if err != nil {
		return rep, fmt.Errorf("leak check: %w", err)
	}
	rep.Scanned, rep.Checked, rep.Leaks = files, scanner.Len(), len(findings)
	for _, f := range findings {
		rel, _ := filepath.Rel(dataDir, f.File)
		rep.LeakFiles = append(rep.LeakFiles, rel)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// summarizeArchive counts what the archive holds, records de-duplicated by id.
func summarizeArchive(ctx context.Context, store archive.Store, rep *demoReport) error {
	ids := map[string]bool{}
	rep.Objects, rep.Bytes, rep.RecordBytes = 0, 0, 0
	clear(rep.Sectors)
	for info, err := range archive.Walk(ctx, store, archive.RecordsDir+"/", "") {
		if err != nil {
			return err
		}
		rep.Objects++
		rep.Bytes += info.Size
		lines, err := archive.ReadObject(ctx, store, info.Key)
		if err != nil {
			return err
		}
		for _, l := range lines {
			var r struct {
				ID     string       `json:"id"`
				Sector mdtap.Sector `json:"sector"`
			}
			if json.Unmarshal(l, &r) != nil || ids[r.ID] {
				continue
			}
			ids[r.ID] = true
			rep.Sectors[string(r.Sector)]++
			rep.RecordBytes += int64(len(l))
		}
	}
	rep.Records = len(ids)
	return nil
}

func printDemoReport(w io.Writer, r *demoReport) {
	fmt.Fprintf(w, "mdtap demo: %d exchanges through the proxy, %d records archived (%.1fs)\n", r.Exchanges, r.Records, r.Seconds)
	ratio := 0.0
	if r.Bytes > 0 {
		ratio = float64(r.RecordBytes) / float64(r.Bytes)
	}
	fmt.Fprintf(w, "  archive:  %d objects, %d bytes (records %d bytes, zstd ratio %.1f), chains %v verified=%v\n",
		r.Objects, r.Bytes, r.RecordBytes, ratio, r.Chains, r.ChainOK)
	names := make([]string, 0, len(r.Sectors))
	for s := range r.Sectors {
		names = append(names, s)
	}
	sort.Strings(names)
	fmt.Fprint(w, "  sectors: ")
	for _, s := range names {
		fmt.Fprintf(w, " %s=%d", s, r.Sectors[s])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  leak check: %d sensitive values of the simulator looked for in %d files under %s: %d found in clear\n",
		r.Checked, r.Scanned, r.DataDir, r.Leaks)
	for _, f := range r.LeakFiles {
		fmt.Fprintf(w, "    leak in %s\n", f)
	}
}

// maxLevel raises a log level to at least warn.
func maxLevel(l zerolog.Level) zerolog.Level {
	if l < zerolog.WarnLevel {
		return zerolog.WarnLevel
	}
	return l
}

func freeAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

func waitReady(ctx context.Context, died <-chan struct{}, u string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", u, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-died:
			return errors.New("a part of the demo stopped")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
