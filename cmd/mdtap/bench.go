package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap/internal/loadgen"
	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/keys"
	"github.com/mdtap/mdtap/proxy"
	"github.com/mdtap/mdtap/stream"
)

// Targets of the proxy benchmark, and what it checks mdtap against.
const (
	targetDirect = "direct"
	targetRelay  = "relay"
	targetMdtap  = "mdtap"

	// minThroughputRatio is the least mdtap/relay saturation throughput.
	minThroughputRatio = 0.80
	// maxAddedP99 is the most p99 latency mdtap may add over the relay at
	// half the relay's saturation rate.
	maxAddedP99 = time.Millisecond
	// maxErrorRate fails a run: a benchmark of failing requests measures
	// nothing.
	maxErrorRate = 0.001

	// testMainEnv makes a test binary of this package act as mdtap
	// (main_test.go), so the benchmark can spawn its proxies under `go test`.
	// The real binary ignores it.
	testMainEnv = "MDTAP_TEST_MAIN"
)

func newBenchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure what mdtap costs on this machine",
	}
	cmd.AddCommand(newBenchProxyCmd(a), newBenchRelayCmd(a), newBenchSidecarCmd(a), newBenchNATSCmd(a))
	return cmd
}

type benchProxyConfig struct {
	duration, warmup time.Duration
	concurrency      int
	rate             float64
	api              string
	json             bool
	failOnMiss       bool
	cpuProfileDir    string
}

func newBenchProxyCmd(a *app) *cobra.Command {
	c := benchProxyConfig{}
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Compare direct calls, a bare goproxy MITM relay and mdtap with full capture",
		Long: `Measure, in one run, on loopback, with the simulator as the provider and the
same load for each:

  direct   load generator ──TLS──▶ simulator
  relay    load generator ──CONNECT/TLS──▶ bare goproxy MITM relay ──TLS──▶ simulator
  mdtap    load generator ──CONNECT/TLS──▶ mdtap proxy ──TLS──▶ simulator
                                              │ protect (built-in policy, Tink)
                                              ▼
                                      NATS JetStream (file store)

The relay, mdtap and NATS run as child processes of this binary, so each
one's memory and CPU time are its own; the simulator and the load generator
run in this process. Each target gets a warmup, then a closed-loop saturation
run (--concurrency clients, --duration). The relay and mdtap then get an
open-loop run at half the relay's saturation rate (or --rate), whose latency
counts from each request's scheduled send time.

Printed: requests/s, p50/p99/p99.9 latency, proxy RSS (end and peak), CPU
per request of the proxy, of NATS and of this process, the CPU other
processes took meanwhile, and the ratios: mdtap/relay throughput (target
≥ 0.80) and the p99 mdtap adds over the relay at half rate (target ≤ 1 ms).
The records in the stream are counted against the exchanges sent through
mdtap.

Everything listens on 127.0.0.1 and shares the machine's cores. MDTAP_*
variables are not passed to the children: they run with defaults. It fails
when more than 0.1% of the requests of a phase fail, or when the stream
holds fewer records than mdtap forwarded exchanges. See docs/bench.md.`,
		Example: `  mdtap bench proxy
  mdtap bench proxy --duration 30s --concurrency 64 --api mixed --json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.duration <= 0 || c.warmup < 0 {
				return usagef("--duration must be positive and --warmup not negative")
			}
			if c.rate < 0 {
				return usagef("--rate %g: want 0 (half the relay's saturation rate) or a positive rate", c.rate)
			}
			if c.concurrency < 1 {
				return usagef("--concurrency %d: want at least 1", c.concurrency)
			}
			if !slices.Contains(loadgen.Workloads, c.api) {
				return usagef("--api %q: want one of %s", c.api, strings.Join(loadgen.Workloads, ", "))
			}
			return runBenchProxy(cmd.Context(), a, c)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&c.duration, "duration", 10*time.Second, "length of each measured phase")
	f.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured load before each measured phase")
	f.IntVar(&c.concurrency, "concurrency", 32, "keep-alive clients, each with one request outstanding")
	f.Float64Var(&c.rate, "rate", 0, "open-loop `rate` (req/s) of the latency phase; 0: half the relay's saturation rate")
	f.StringVar(&c.api, "api", loadgen.WorkloadTransactions, "workload: "+strings.Join(loadgen.Workloads, ", ")+
		" (transactions: a deposit-transactions POST with a ~2 KiB response)")
	f.BoolVar(&c.json, "json", false, "print the report as one JSON object")
	f.BoolVar(&c.failOnMiss, "fail-on-miss", false, "exit 1 when mdtap misses a target (not only on errors)")
	f.StringVar(&c.cpuProfileDir, "cpuprofile", "", "write CPU profiles of the relay and mdtap children into `dir` (relay.pprof, mdtap.pprof)")
	return cmd
}

// The report. Latencies in milliseconds, CPU in microseconds per request.

type benchReport struct {
	Date        string    `json:"date"`
	GoVersion   string    `json:"go_version"`
	CPUs        int       `json:"cpus"`
	GOMAXPROCS  int       `json:"gomaxprocs"`
	LoadBefore  []float64 `json:"load_avg_before,omitempty"`
	LoadAfter   []float64 `json:"load_avg_after,omitempty"`
	API         string    `json:"api"`
	Workload    string    `json:"workload"`
	RespBytes   int       `json:"resp_bytes"`
	Concurrency int       `json:"concurrency"`
	DurationS   float64   `json:"duration_s"`
	WarmupS     float64   `json:"warmup_s"`

	Targets []*targetReport `json:"targets"`
	// HalfRateRPS is the open-loop rate: half the relay's saturation rate
	// unless --rate set it.
	HalfRateRPS float64       `json:"half_rate_rps"`
	Ratios      ratioReport   `json:"ratios"`
	Capture     captureReport `json:"capture"`
	Failures    []string      `json:"failures,omitempty"`
}

type targetReport struct {
	Name       string       `json:"name"`
	Saturation phaseReport  `json:"saturation"`
	HalfRate   *phaseReport `json:"half_rate,omitempty"`
	// RSSMiB is the proxy child's resident memory after its phases,
	// PeakRSSMiB its high-water mark; absent for direct.
	RSSMiB     float64 `json:"rss_mib,omitempty"`
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"`
	// Exchanges counts every request sent to the target, warmups included.
	Exchanges int64 `json:"exchanges"`
}

type phaseReport struct {
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	RPS        float64 `json:"rps"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	P999ms     float64 `json:"p999_ms"`
	ProxyCPUus float64 `json:"proxy_cpu_us_per_req,omitempty"`
	// NATSCPUus is the NATS server's CPU per request (mdtap only).
	NATSCPUus float64 `json:"nats_cpu_us_per_req,omitempty"`
	// Unsent counts requests of an open-loop phase never sent because the
	// target fell too far behind the rate.
	Unsent int64 `json:"unsent,omitempty"`
	// BenchCPUus is this process's CPU per request: load generator,
	// simulator and (for mdtap) NATS.
	BenchCPUus float64 `json:"bench_cpu_us_per_req"`
	// OtherCores is the CPU that processes outside the bench (other
	// work on the machine) used during the phase, in cores: the phase's
	// numbers are only as good as this is small.
	OtherCores float64 `json:"other_cores"`
	FirstError string  `json:"first_error,omitempty"`
}

type ratioReport struct {
	RelayVsDirect float64 `json:"relay_vs_direct"`
	// MdtapVsRelay compares mdtap's sustained throughput (its saturation
	// rate, or its capture's rate when that was lower) with the relay's.
	MdtapVsRelay   float64 `json:"mdtap_vs_relay"`
	ThroughputPass bool    `json:"throughput_pass"`
	AddedP99ms     float64 `json:"added_p99_ms"`
	LatencyPass    bool    `json:"latency_pass"`
	// MdtapVsRelayCPU is the throughput ratio the CPU per request predicts
	// for a machine the whole pipeline saturates: (bench + relay) / (bench
	// + mdtap + NATS), at saturation. It moves much less than the measured
	// ratio when other work shares the machine.
	MdtapVsRelayCPU float64 `json:"mdtap_vs_relay_cpu"`
	// HalfRateLoad is the half rate as a share of mdtap's own saturation
	// rate: near 1, mdtap's queues (and its p99) grow without bound.
	HalfRateLoad float64 `json:"half_rate_load_mdtap"`
}

type captureReport struct {
	Stream string `json:"stream"`
	// Records is what the stream holds after mdtap drained; Exchanges what
	// was sent through mdtap.
	Records   uint64 `json:"records"`
	Exchanges int64  `json:"exchanges"`
	Bytes     uint64 `json:"bytes"`
	// During the saturation phase: records leaving the capture queue per
	// second, and the queue's depth at its end (a growing queue means the
	// proxy outran the capture and its rate is not sustainable).
	SaturationRecordsPerS float64 `json:"saturation_records_per_s"`
	QueueDepthEnd         float64 `json:"queue_depth_end"`
	Degraded              float64 `json:"degraded"`
	Dropped               float64 `json:"dropped"`
	// The NATS server's memory after the mdtap phases.
	NATSRSSMiB     float64 `json:"nats_rss_mib"`
	NATSPeakRSSMiB float64 `json:"nats_peak_rss_mib"`
}

// bench holds what the targets share.
type bench struct {
	a        *app
	c        benchProxyConfig
	tmp      string
	exe      string
	simURL   string
	simHost  string // host:port
	simCA    string // PEM file
	mitmPool *x509.CertPool
	simPool  *x509.CertPool
	work     *loadgen.Workload
	natsURL  string
	natsPID  int
	seq      atomic.Uint64 // numbers every request, for unique tran ids
}

// runBenchProxy sets up the simulator, JetStream, keys and CA in a
// temporary directory, runs the three targets in turn and reports.
func runBenchProxy(ctx context.Context, a *app, c benchProxyConfig) (err error) {
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = errors.New("bench proxy: interrupted")
		}
	}()
	b := &bench{a: a, c: c}
	rep := &benchReport{
		Date: time.Now().UTC().Format(time.RFC3339), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), LoadBefore: loadAvg(), API: c.api, Concurrency: c.concurrency,
		DurationS: c.duration.Seconds(), WarmupS: c.warmup.Seconds(),
	}
	if b.exe, err = os.Executable(); err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	if b.tmp, err = os.MkdirTemp("", "mdtap-bench-*"); err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(b.tmp)
	if c.cpuProfileDir != "" {
		if err := os.MkdirAll(c.cpuProfileDir, 0o755); err != nil {
			return fmt.Errorf("create --cpuprofile dir: %w", err)
		}
	}

	s := sim.New(sim.Options{})
	tlsCfg, caPEM, err := sim.NewTLSConfig(nil, nil)
	if err != nil {
		return err
	}
	srv, err := sim.Start("127.0.0.1:0", s, tlsCfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	b.simURL, b.simHost = srv.URL(), srv.Addr().String()
	b.simCA = filepath.Join(b.tmp, "sim-ca.pem")
	if err := os.WriteFile(b.simCA, caPEM, 0o644); err != nil {
		return fmt.Errorf("write simulator CA: %w", err)
	}
	b.simPool = x509.NewCertPool()
	b.simPool.AppendCertsFromPEM(caPEM)

	if err := keys.Init(ctx, filepath.Join(b.tmp, "keys"), ""); err != nil {
		return err
	}
	if err := proxy.InitCA(filepath.Join(b.tmp, "ca"), false); err != nil {
		return err
	}
	caCert, err := os.ReadFile(filepath.Join(b.tmp, "ca", proxy.CACertFile))
	if err != nil {
		return fmt.Errorf("read MITM CA: %w", err)
	}
	b.mitmPool = x509.NewCertPool()
	b.mitmPool.AppendCertsFromPEM(caCert)

	direct := b.client(nil)
	if b.work, err = loadgen.NewWorkload(ctx, c.api, s, b.simURL, direct); err != nil {
		return err
	}
	direct.CloseIdleConnections()
	rep.Workload, rep.RespBytes = b.work.Describe(), b.work.MeanRespBytes()
	b.progress("workload %s: %s", c.api, rep.Workload)

	d, err := b.runDirect(ctx)
	if err != nil {
		return err
	}
	rep.Targets = append(rep.Targets, d)
	relay, err := b.runRelay(ctx, c.rate)
	if err != nil {
		return err
	}
	rep.Targets = append(rep.Targets, relay)
	rep.HalfRateRPS = relay.Saturation.RPS / 2
	if c.rate > 0 {
		rep.HalfRateRPS = c.rate
	}
	md, capt, err := b.runMdtap(ctx, rep.HalfRateRPS)
	if err != nil {
		return err
	}
	rep.Targets = append(rep.Targets, md)
	rep.Capture = *capt
	rep.LoadAfter = loadAvg()

	rep.Ratios = ratios(d, relay, md, capt)
	for _, t := range rep.Targets {
		for _, p := range []*phaseReport{&t.Saturation, t.HalfRate} {
			if p == nil {
				continue
			}
			if n := p.Requests + p.Errors; n > 0 && float64(p.Errors)/float64(n) > maxErrorRate {
				rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %d of %d requests failed (first: %s)", t.Name, p.Errors, n, p.FirstError))
			}
		}
	}
	if capt.Records < uint64(capt.Exchanges) {
		rep.Failures = append(rep.Failures, fmt.Sprintf("stream holds %d records for %d exchanges through mdtap", capt.Records, capt.Exchanges))
	}
	if c.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeBenchReport(a.stdout, rep)
	}
	if len(rep.Failures) > 0 {
		return fmt.Errorf("bench proxy: %s", strings.Join(rep.Failures, "; "))
	}
	if c.failOnMiss && !(rep.Ratios.ThroughputPass && rep.Ratios.LatencyPass) {
		return &exitError{code: exitFailure}
	}
	return nil
}

// sustained is mdtap's saturation throughput, or the rate its capture kept
// up with when that was lower: the capture queue absorbs the difference for
// a while, but once it is full the proxy slows to the capture's pace.
func sustained(md *targetReport, capt *captureReport) float64 {
	if captureBehind(md, capt) {
		return capt.SaturationRecordsPerS
	}
	return md.Saturation.RPS
}

// captureBehind reports a saturation phase in which mdtap forwarded
// exchanges faster than it captured them.
func captureBehind(md *targetReport, capt *captureReport) bool {
	return capt.SaturationRecordsPerS > 0 && capt.SaturationRecordsPerS < 0.95*md.Saturation.RPS
}

// fellBehind reports an open-loop phase that did not keep its rate: its
// latencies then grow with the run's length, whatever p99 says.
func fellBehind(p *phaseReport, rate float64) bool {
	return p.Unsent > 0 || p.RPS < 0.95*rate
}

func ratios(d, relay, md *targetReport, capt *captureReport) ratioReport {
	var r ratioReport
	if d.Saturation.RPS > 0 {
		r.RelayVsDirect = relay.Saturation.RPS / d.Saturation.RPS
	}
	if relay.Saturation.RPS > 0 {
		r.MdtapVsRelay = sustained(md, capt) / relay.Saturation.RPS
	}
	r.ThroughputPass = r.MdtapVsRelay >= minThroughputRatio
	if relay.HalfRate != nil && md.HalfRate != nil {
		r.AddedP99ms = md.HalfRate.P99ms - relay.HalfRate.P99ms
		r.LatencyPass = r.AddedP99ms <= ms(maxAddedP99) && !fellBehind(md.HalfRate, relay.HalfRate.RPS)
	}
	if rs, mdSat := relay.Saturation, md.Saturation; mdSat.ProxyCPUus > 0 && rs.ProxyCPUus > 0 {
		r.MdtapVsRelayCPU = (rs.BenchCPUus + rs.ProxyCPUus) / (mdSat.BenchCPUus + mdSat.ProxyCPUus + mdSat.NATSCPUus)
	}
	if md.Saturation.RPS > 0 && relay.HalfRate != nil {
		r.HalfRateLoad = relay.HalfRate.RPS / md.Saturation.RPS
	}
	return r
}

// client is a load-generator client: keep-alive connections for every
// worker, through proxyURL when given (trusting the MITM CA), else straight
// to the simulator. No compression, so the body sizes are the workload's.
func (b *bench) client(proxyURL *url.URL) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: b.simPool},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        2 * b.c.concurrency,
		MaxIdleConnsPerHost: b.c.concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if proxyURL != nil {
		tr.Proxy = http.ProxyURL(proxyURL)
		tr.TLSClientConfig.RootCAs = b.mitmPool
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.a.stderr, "bench: "+format+"\n", args...)
}

// phase runs one load phase and measures the CPU it cost; pid is the proxy
// child (0 for none), natsPID the NATS server's (0 for none). rate 0 is the
// closed loop.
func (b *bench) phase(ctx context.Context, name string, hc *http.Client, pid, natsPID int, rate float64, d time.Duration) (phaseReport, error) {
	o := loadgen.Options{Client: hc, Concurrency: b.c.concurrency, Request: b.work.Requests(b.simURL), Seq: &b.seq}
	var before, after, natsBefore, natsAfter loadgen.ProcStat
	if pid > 0 {
		before, _ = loadgen.ReadProc(pid)
	}
	if natsPID > 0 {
		natsBefore, _ = loadgen.ReadProc(natsPID)
	}
	self, busy, t0 := loadgen.SelfCPU(), loadgen.BusyCPU(), time.Now()
	var res *loadgen.Result
	var err error
	if rate > 0 {
		res, err = loadgen.Open(ctx, o, rate, d)
	} else {
		res, err = loadgen.Closed(ctx, o, d)
	}
	if err != nil {
		return phaseReport{}, err
	}
	selfCPU, busyCPU, wall := loadgen.SelfCPU()-self, loadgen.BusyCPU()-busy, time.Since(t0)
	if pid > 0 {
		after, _ = loadgen.ReadProc(pid)
	}
	if natsPID > 0 {
		natsAfter, _ = loadgen.ReadProc(natsPID)
	}
	p := phaseReport{
		Requests: res.Requests, Errors: res.Errors, RPS: res.Rate(), Unsent: res.Unsent,
		P50ms: ms(res.Percentile(0.50)), P99ms: ms(res.Percentile(0.99)), P999ms: ms(res.Percentile(0.999)),
		FirstError: res.FirstError,
	}
	if busyCPU > 0 {
		other := busyCPU - selfCPU - (after.CPU - before.CPU) - (natsAfter.CPU - natsBefore.CPU)
		p.OtherCores = math.Max(0, other.Seconds()/wall.Seconds())
	}
	if n := res.Requests + res.Errors; n > 0 {
		p.BenchCPUus = us(selfCPU) / float64(n)
		if pid > 0 && after.CPU > 0 {
			p.ProxyCPUus = us(after.CPU-before.CPU) / float64(n)
		}
		if natsPID > 0 && natsAfter.CPU > 0 {
			p.NATSCPUus = us(natsAfter.CPU-natsBefore.CPU) / float64(n)
		}
	}
	if name != "" {
		b.progress("%s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors, proxy CPU %.0f µs/req, other processes %.2f cores",
			name, p.RPS, p.P50ms, p.P99ms, p.Errors, p.ProxyCPUus, p.OtherCores)
	}
	return p, nil
}

func (b *bench) runDirect(ctx context.Context) (*targetReport, error) {
	t := &targetReport{Name: targetDirect}
	hc := b.client(nil)
	defer hc.CloseIdleConnections()
	start := b.seq.Load()
	if _, err := b.phase(ctx, "", hc, 0, 0, 0, b.c.warmup); err != nil {
		return nil, err
	}
	p, err := b.phase(ctx, "direct saturation", hc, 0, 0, 0, b.c.duration)
	if err != nil {
		return nil, err
	}
	t.Saturation = p
	t.Exchanges = int64(b.seq.Load() - start)
	return t, nil
}

// proxiedHooks let a target add to the phases of runProxied.
type proxiedHooks struct {
	// halfRate gives the open-loop rate from the saturation result; 0 skips
	// the half-rate phase.
	halfRate func(sat phaseReport) float64
	// aroundSat runs just before the saturation phase and returns what runs
	// just after it.
	aroundSat func() (after func() error, err error)
	// beforeHalf runs before the half-rate phase.
	beforeHalf func() error
}

// runProxied runs the phases against a proxy child: warmup, saturation and
// then, at the rate hooks.halfRate gives, a warmup and a measured open-loop
// run; it ends with the child's memory reading.
func (b *bench) runProxied(ctx context.Context, t *targetReport, ch *child, hooks proxiedHooks) error {
	hc := b.client(&url.URL{Scheme: "http", Host: ch.listen})
	defer hc.CloseIdleConnections()
	start := b.seq.Load()
	defer func() { t.Exchanges = int64(b.seq.Load() - start) }()
	pid := ch.pid()
	natsPID := 0
	if t.Name == targetMdtap {
		natsPID = b.natsPID
	}
	if _, err := b.phase(ctx, "", hc, pid, natsPID, 0, b.c.warmup); err != nil {
		return err
	}
	after := func() error { return nil }
	if hooks.aroundSat != nil {
		var err error
		if after, err = hooks.aroundSat(); err != nil {
			return err
		}
	}
	p, err := b.phase(ctx, t.Name+" saturation", hc, pid, natsPID, 0, b.c.duration)
	if err != nil {
		return err
	}
	t.Saturation = p
	if err := after(); err != nil {
		return err
	}
	rate := 0.0
	if hooks.halfRate != nil {
		rate = hooks.halfRate(p)
	}
	if rate > 0 {
		if hooks.beforeHalf != nil {
			if err := hooks.beforeHalf(); err != nil {
				return err
			}
		}
		if b.c.warmup > 0 {
			if _, err := b.phase(ctx, "", hc, pid, natsPID, rate, b.c.warmup); err != nil {
				return err
			}
		}
		hp, err := b.phase(ctx, fmt.Sprintf("%s at %.0f req/s", t.Name, rate), hc, pid, natsPID, rate, b.c.duration)
		if err != nil {
			return err
		}
		t.HalfRate = &hp
	}
	if st, err := loadgen.ReadProc(pid); err == nil {
		t.RSSMiB, t.PeakRSSMiB = mib(st.RSS), mib(st.PeakRSS)
	}
	return nil
}

func (b *bench) runRelay(ctx context.Context, rate float64) (*targetReport, error) {
	listen, err := pickPort()
	if err != nil {
		return nil, err
	}
	args := []string{"bench", "relay", "--listen", listen, "--ca-dir", filepath.Join(b.tmp, "ca"),
		"--upstream-ca", b.simCA, "--allow-host", b.simHost}
	if b.c.cpuProfileDir != "" {
		args = append(args, "--cpuprofile", filepath.Join(b.c.cpuProfileDir, "relay.pprof"))
	}
	ch, err := b.start(ctx, targetRelay, listen, args, func(ctx context.Context) error { return dialOK(ctx, listen) })
	if err != nil {
		return nil, err
	}
	defer ch.kill()
	t := &targetReport{Name: targetRelay}
	// The half rate is half of the relay's own saturation rate.
	hooks := proxiedHooks{halfRate: func(sat phaseReport) float64 {
		if rate > 0 {
			return rate
		}
		return sat.RPS / 2
	}}
	if err := b.runProxied(ctx, t, ch, hooks); err != nil {
		return nil, ch.fail(err)
	}
	if err := ch.stop(); err != nil {
		return nil, err
	}
	return t, nil
}

func (b *bench) runMdtap(ctx context.Context, halfRate float64) (*targetReport, *captureReport, error) {
	listen, err := pickPort()
	if err != nil {
		return nil, nil, err
	}
	adminAddr, err := pickPort()
	if err != nil {
		return nil, nil, err
	}
	natsAddr, err := pickPort()
	if err != nil {
		return nil, nil, err
	}
	nats, err := b.start(ctx, "nats", natsAddr, []string{"bench", "nats", "--listen", natsAddr, "--store", filepath.Join(b.tmp, "nats")},
		func(ctx context.Context) error { return dialOK(ctx, natsAddr) })
	if err != nil {
		return nil, nil, err
	}
	defer nats.kill()
	b.natsURL, b.natsPID = "nats://"+natsAddr, nats.pid()

	args := []string{"proxy"}
	if b.c.cpuProfileDir != "" {
		// The same command and code path with a CPU profile around it.
		args = []string{"bench", "sidecar", "--cpuprofile", filepath.Join(b.c.cpuProfileDir, "mdtap.pprof")}
	}
	args = append(args, "--listen", listen, "--admin-listen", adminAddr,
		"--ca-dir", filepath.Join(b.tmp, "ca"), "--keys", filepath.Join(b.tmp, "keys"), "--nats", b.natsURL,
		"--allow-host", b.simHost, "--upstream-ca", b.simCA, "--service", "mdtap-bench", "--log-level", "warn")
	metrics := "http://" + adminAddr + "/metrics"
	ch, err := b.start(ctx, targetMdtap, listen, args, func(ctx context.Context) error {
		if err := httpOK(ctx, "http://"+adminAddr+"/readyz"); err != nil {
			return err
		}
		return dialOK(ctx, listen)
	})
	if err != nil {
		return nil, nil, err
	}
	defer ch.kill()
	t := &targetReport{Name: targetMdtap}
	capt := &captureReport{Stream: stream.DefaultStreamName}
	hooks := proxiedHooks{
		halfRate: func(phaseReport) float64 { return halfRate },
		// Records leaving the capture queue during saturation, and the
		// queue left at its end: a growing queue means the proxy outran
		// its capture.
		aroundSat: func() (func() error, error) {
			m0, err := loadgen.ScrapeMetrics(ctx, metrics)
			if err != nil {
				return nil, err
			}
			t0 := time.Now()
			return func() error {
				m1, err := loadgen.ScrapeMetrics(ctx, metrics)
				if err != nil {
					return err
				}
				capt.SaturationRecordsPerS = (m1["mdtap_capture_total"] - m0["mdtap_capture_total"]) / time.Since(t0).Seconds()
				capt.QueueDepthEnd = m1["mdtap_capture_queue_depth"]
				b.progress("mdtap capture during saturation: %.0f records/s, queue depth %.0f at its end",
					capt.SaturationRecordsPerS, capt.QueueDepthEnd)
				return nil
			}, nil
		},
		// A backlog left by the saturation phase would be worked off during
		// the half-rate phase and charge its latency: let it drain first.
		beforeHalf: func() error { return waitDrained(ctx, metrics) },
	}
	if err := b.runProxied(ctx, t, ch, hooks); err != nil {
		return nil, nil, ch.fail(err)
	}
	if m, err := loadgen.ScrapeMetrics(ctx, metrics); err == nil {
		capt.Degraded, capt.Dropped = m["mdtap_capture_degraded_total"], m["mdtap_capture_dropped_total"]
	}
	if st, err := loadgen.ReadProc(b.natsPID); err == nil {
		capt.NATSRSSMiB, capt.NATSPeakRSSMiB = mib(st.RSS), mib(st.PeakRSS)
	}
	capt.Exchanges = t.Exchanges
	// SIGTERM: mdtap drains its queue and waits for the stream's acks.
	if err := ch.stop(); err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if capt.Records, capt.Bytes, err = loadgen.StreamState(sctx, b.natsURL, capt.Stream); err != nil {
		return nil, nil, nats.fail(err)
	}
	if err := nats.stop(); err != nil {
		return nil, nil, err
	}
	b.progress("records in stream: %d of %d exchanges", capt.Records, capt.Exchanges)
	return t, capt, nil
}

// waitDrained polls mdtap's metrics until its capture queue is empty and no
// publish awaits an ack.
func waitDrained(ctx context.Context, metricsURL string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m, err := loadgen.ScrapeMetrics(ctx, metricsURL)
		if err != nil {
			return err
		}
		if m["mdtap_capture_queue_depth"] == 0 && m["mdtap_publish_in_flight"] == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("capture queue still holds %.0f records after 2m", m["mdtap_capture_queue_depth"])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// child is a process of the bench (a proxy under test, the NATS server):
// this binary again, with another command line.
type child struct {
	name    string
	listen  string
	proc    *loadgen.Child
	logPath string
}

// start spawns this binary with args, its output to a log file, and waits
// until ready answers nil. The child is stopped with SIGTERM when ctx ends
// (Ctrl-C), and killed should the bench die.
func (b *bench) start(ctx context.Context, name, listen string, args []string, ready func(context.Context) error) (*child, error) {
	ch := &child{name: name, listen: listen, logPath: filepath.Join(b.tmp, name+".log")}
	logf, err := os.Create(ch.logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(b.exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = childEnv()
	if ch.proc, err = loadgen.StartChild(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		select {
		case <-ch.proc.Done():
			return nil, ch.fail(fmt.Errorf("%s exited before it was ready: %v", name, ch.proc.Err()))
		default:
		}
		err := ready(rctx)
		if err == nil {
			b.progress("%s ready (pid %d)", name, ch.pid())
			return ch, nil
		}
		select {
		case <-rctx.Done():
			ch.kill()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, ch.fail(fmt.Errorf("%s not ready after 30s: %v", name, err))
		case <-ch.proc.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (ch *child) pid() int { return ch.proc.Pid() }

// stop sends SIGTERM and waits for a clean exit (mdtap proxy drains its
// capture queue into the stream first).
func (ch *child) stop() error {
	if err := ch.terminate(60 * time.Second); err != nil {
		return ch.fail(err)
	}
	if err := ch.proc.Err(); err != nil {
		return ch.fail(fmt.Errorf("%s: %w", ch.name, err))
	}
	return nil
}

// kill stops the child if it still runs (error and interrupt paths).
func (ch *child) kill() { ch.terminate(30 * time.Second) }

func (ch *child) terminate(grace time.Duration) error {
	select {
	case <-ch.proc.Done():
		return nil
	default:
	}
	ch.proc.Signal(syscall.SIGTERM)
	select {
	case <-ch.proc.Done():
		return nil
	case <-time.After(grace):
		ch.proc.Signal(os.Kill)
		<-ch.proc.Done()
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", ch.name, grace)
	}
}

// fail adds the tail of the child's log to err.
func (ch *child) fail(err error) error {
	b, _ := os.ReadFile(ch.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	tail := strings.Join(lines, "\n  ")
	if strings.TrimSpace(tail) == "" {
		return err
	}
	return fmt.Errorf("%w\n%s log (last lines):\n  %s", err, ch.name, tail)
}

// childEnv is this environment without MDTAP_* settings (the children run
// with defaults and the flags the bench gives), with testMainEnv set so a
// test binary acts as mdtap.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MDTAP_") {
			env = append(env, kv)
		}
	}
	return append(env, testMainEnv+"=1")
}

// pickPort picks a free loopback port for a child to listen on.
func pickPort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func dialOK(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func httpOK(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	return nil
}

// loadAvg reads the 1, 5 and 15 minute load averages (Linux), or nil.
func loadAvg() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	var out []float64
	for _, f := range strings.Fields(string(b))[:3] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil
		}
		out = append(out, v)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
func mib(n int64) float64        { return float64(n) / (1 << 20) }
func passMiss(ok bool) string    { return map[bool]string{true: "PASS", false: "MISS"}[ok] }
func fmtLoad(l []float64) string { return strings.Trim(fmt.Sprint(l), "[]") }
func fmtMs(v float64) string     { return strconv.FormatFloat(v, 'f', 2, 64) }
func fmtOpt(v float64, f string) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf(f, v)
}

// noisyCores is how much CPU other processes may use during a phase before
// the report warns that its numbers are unreliable.
const noisyCores = 0.2

func maxOtherCores(r *benchReport) float64 {
	m := 0.0
	for _, t := range r.Targets {
		m = math.Max(m, t.Saturation.OtherCores)
		if t.HalfRate != nil {
			m = math.Max(m, t.HalfRate.OtherCores)
		}
	}
	return m
}

func rateNote(r *benchReport) string {
	for _, t := range r.Targets {
		if t.Name == targetRelay && t.Saturation.RPS > 0 && math.Abs(r.HalfRateRPS-t.Saturation.RPS/2) < 0.5 {
			return " = 0.5 × relay saturation"
		}
	}
	return ", set with --rate"
}

func writeBenchReport(w io.Writer, r *benchReport) {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "mdtap bench proxy: %s — %s\n", r.API, r.Workload)
	fmt.Fprintf(&buf, "%d clients, %s per phase after %s warmup; %s, %d CPUs, GOMAXPROCS %d; load average %s before, %s after\n\n",
		r.Concurrency, time.Duration(r.DurationS*float64(time.Second)), time.Duration(r.WarmupS*float64(time.Second)),
		r.GoVersion, r.CPUs, r.GOMAXPROCS, fmtLoad(r.LoadBefore), fmtLoad(r.LoadAfter))

	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(&buf, "saturation (closed loop, %d clients)\n", r.Concurrency)
	fmt.Fprintln(tw, "target\treq/s\tp50 ms\tp99 ms\tp99.9 ms\terrors\tRSS MiB\tpeak MiB\tproxy CPU µs/req\tNATS CPU µs/req\tbench CPU µs/req\tother cores\t")
	for _, t := range r.Targets {
		p := t.Saturation
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%.0f\t%.2f\t\n", t.Name, p.RPS, fmtMs(p.P50ms), fmtMs(p.P99ms), fmtMs(p.P999ms),
			p.Errors, fmtOpt(t.RSSMiB, "%.1f"), fmtOpt(t.PeakRSSMiB, "%.1f"), fmtOpt(p.ProxyCPUus, "%.0f"), fmtOpt(p.NATSCPUus, "%.0f"), p.BenchCPUus, p.OtherCores)
	}
	tw.Flush()
	fmt.Fprintf(&buf, "\nhalf rate (open loop at %.0f req/s%s; latency from scheduled send)\n", r.HalfRateRPS, rateNote(r))
	fmt.Fprintln(tw, "target\treq/s\tp50 ms\tp99 ms\tp99.9 ms\terrors\tunsent\tproxy CPU µs/req\tNATS CPU µs/req\tbench CPU µs/req\tother cores\t")
	for _, t := range r.Targets {
		if p := t.HalfRate; p != nil {
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%.0f\t%.2f\t\n", t.Name, p.RPS, fmtMs(p.P50ms), fmtMs(p.P99ms), fmtMs(p.P999ms),
				p.Errors, p.Unsent, fmtOpt(p.ProxyCPUus, "%.0f"), fmtOpt(p.NATSCPUus, "%.0f"), p.BenchCPUus, p.OtherCores)
		}
	}
	tw.Flush()

	c := r.Capture
	fmt.Fprintf(&buf, "\nrecords in stream: %d of %d exchanges", c.Records, c.Exchanges)
	if c.Records > 0 {
		fmt.Fprintf(&buf, " (%.1f KiB per record)", float64(c.Bytes)/float64(c.Records)/1024)
	}
	fmt.Fprintf(&buf, "; degraded %.0f, dropped %.0f\n", c.Degraded, c.Dropped)
	fmt.Fprintf(&buf, "capture during saturation: %.0f records/s, queue depth %.0f at its end\n", c.SaturationRecordsPerS, c.QueueDepthEnd)
	for _, t := range r.Targets {
		if t.Name == targetMdtap && captureBehind(t, &c) {
			fmt.Fprintf(&buf, "mdtap forwarded %.0f req/s but captured only %.0f records/s: the ratio below uses the capture's rate, the one it can sustain\n",
				t.Saturation.RPS, c.SaturationRecordsPerS)
		}
	}
	for _, t := range r.Targets {
		if t.Name == targetMdtap {
			fmt.Fprintf(&buf, "NATS server: RSS %.1f MiB (peak %.1f)\n", c.NATSRSSMiB, c.NATSPeakRSSMiB)
		}
	}
	buf.WriteString("\n")

	q := r.Ratios
	fmt.Fprintf(tw, "relay / direct throughput\t%.2f×\t\t\t\n", q.RelayVsDirect)
	fmt.Fprintf(tw, "mdtap / relay throughput\t%.2f×\ttarget ≥ %.2f×\t%s\t\n", q.MdtapVsRelay, minThroughputRatio, passMiss(q.ThroughputPass))
	if q.MdtapVsRelayCPU > 0 {
		fmt.Fprintf(tw, "  predicted by CPU per request\t%.2f×\t\t\t\n", q.MdtapVsRelayCPU)
	}
	fmt.Fprintf(tw, "added p99 at half rate\t%+.2f ms\ttarget ≤ %s ms\t%s\t\n", q.AddedP99ms, fmtMs(ms(maxAddedP99)), passMiss(q.LatencyPass))
	tw.Flush()
	fmt.Fprintf(&buf, "(the half rate is %.0f%% of mdtap's own saturation rate)\n", 100*q.HalfRateLoad)
	for _, t := range r.Targets {
		if p := t.HalfRate; p != nil && fellBehind(p, r.HalfRateRPS) {
			fmt.Fprintf(&buf, "%s could not keep %.0f req/s: it answered %.0f req/s and left %d requests unsent\n", t.Name, r.HalfRateRPS, p.RPS, p.Unsent)
		}
	}
	if busy := maxOtherCores(r); busy > noisyCores {
		fmt.Fprintf(&buf, "warning: processes outside the bench used up to %.2f cores during a phase; on a busy machine the numbers and ratios are unreliable\n", busy)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&buf, "FAILED: %s\n", f)
	}
	// tabwriter pads the last column too; drop the trailing blanks.
	for line := range strings.Lines(buf.String()) {
		io.WriteString(w, strings.TrimRight(line, " \n")+"\n")
	}
}

// newBenchRelayCmd is the baseline proxy, run by bench proxy as a child.
func newBenchRelayCmd(a *app) *cobra.Command {
	var listen, caDir, upstreamCA, allow, cpuProfile string
	cmd := &cobra.Command{
		Use:    "relay",
		Short:  "Serve a bare goproxy MITM relay (the bench proxy baseline)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if caDir == "" || upstreamCA == "" || allow == "" {
				return usagef("--ca-dir, --upstream-ca and --allow-host are required")
			}
			ca, _, err := proxy.LoadCA(caDir)
			if err != nil {
				return err
			}
			pem, err := os.ReadFile(upstreamCA)
			if err != nil {
				return fmt.Errorf("read --upstream-ca: %w", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return usagef("--upstream-ca %s holds no PEM certificate", upstreamCA)
			}
			h, tr, err := loadgen.NewRelay(loadgen.RelayOptions{CA: ca, Allow: allow, Roots: roots,
				Logger: log.New(a.stderr, "relay: ", log.LstdFlags)})
			if err != nil {
				return err
			}
			stop, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer stop()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen %s: %w", listen, err)
			}
			srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return fmt.Errorf("relay: %w", err)
			case <-cmd.Context().Done():
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			tr.CloseIdleConnections()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8081", "listen `address`")
	f.StringVar(&caDir, "ca-dir", "", "MITM CA `dir` (mdtap ca init)")
	f.StringVar(&upstreamCA, "upstream-ca", "", "trusted roots for the upstream, PEM `file`")
	f.StringVar(&allow, "allow-host", "", "the one `host` or host:port to intercept")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to `file` at exit")
	return cmd
}

// newBenchSidecarCmd is mdtap proxy with a CPU profile around it: the same
// flags and code path, for bench proxy --cpuprofile.
func newBenchSidecarCmd(a *app) *cobra.Command {
	cmd := newProxyCmd(a)
	cmd.Use, cmd.Hidden = "sidecar", true
	cmd.Short = "Run mdtap proxy under a CPU profile (bench proxy --cpuprofile)"
	var cpuProfile string
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to `file` at exit")
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		stop, err := startCPUProfile(cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
		return run(cmd, args)
	}
	return cmd
}

func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// newBenchNATSCmd is the JetStream server of bench proxy, run as a child so
// its CPU and memory are its own and it does not share the load generator's
// scheduler.
func newBenchNATSCmd(a *app) *cobra.Command {
	var listen, store string
	cmd := &cobra.Command{
		Use:    "nats",
		Short:  "Serve an embedded NATS server with JetStream (the bench proxy stream)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if store == "" {
				return usagef("--store is required")
			}
			js, err := loadgen.StartJetStream(listen, store)
			if err != nil {
				return err
			}
			a.log.Info().Str("url", js.URL()).Msg("nats serving")
			<-cmd.Context().Done()
			js.Shutdown()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:4222", "listen `address`")
	cmd.Flags().StringVar(&store, "store", "", "JetStream store `dir`")
	return cmd
}
