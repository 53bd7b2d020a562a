package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/s3store"
	"github.com/mdtap/mdtap/internal/leakcheck"
)

const (
	// envSoak turns the soak test on and says how long traffic runs.
	envSoak = "MDTAP_SOAK"
	// envRate and envClients override the traffic: exchanges per second (all
	// clients together) and concurrent clients.
	envRate    = "MDTAP_SOAK_RATE"
	envClients = "MDTAP_SOAK_CLIENTS"

	defaultRate    = 40 // moderate: the reference machine has 2 cores, shared
	defaultClients = 4
	// maxGrowth is the largest RSS and goroutine growth accepted from the
	// end of the warm-up to the end of the run, in percent.
	maxGrowth = 10
	// goroutineSlack absorbs a few goroutines that come and go with
	// connections, so a process with few goroutines is not failed for one
	// more reading at the end.
	goroutineSlack = 5
)

// mdtapBin is the mdtap binary TestMain builds when the soak test runs.
var mdtapBin string

func TestMain(m *testing.M) {
	if os.Getenv(envSoak) == "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "mdtap-soak-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	mdtapBin = filepath.Join(dir, "mdtap")
	cmd := exec.Command("go", "build", "-o", mdtapBin, "github.com/mdtap/mdtap/cmd/mdtap")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak: build mdtap:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func envNumber(t *testing.T, name string, def float64) float64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return f
}

// TestSoak drives mixed MyData traffic through mdtap proxy → JetStream →
// mdtap archive → versitygw for $MDTAP_SOAK, restarting NATS, stopping S3
// and killing an archiver (SIGKILL) in turn, then reconciles: every
// exchange the clients completed is archived under exactly one record id,
// memory and goroutines of the proxy and of the archiver that is never
// killed stay flat after the warm-up, and nothing written anywhere holds
// one of the simulator's sensitive values in clear.
func TestSoak(t *testing.T) {
	raw := os.Getenv(envSoak)
	if raw == "" {
		t.Skip("soak test: run with MDTAP_SOAK=10m go test -count=1 -v -timeout 30m ./internal/soak/ (see docs/soak.md)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("soak test: reads memory from /proc, Linux only")
	}
	dur, err := time.ParseDuration(raw)
	if err != nil || dur < 30*time.Second {
		t.Fatalf("%s=%q: want a duration of at least 30s", envSoak, raw)
	}
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < dur+5*time.Minute {
		t.Fatalf("%s=%s needs -timeout of at least %s (setup, drain and the leak scan take a few minutes)", envSoak, dur, dur+5*time.Minute)
	}
	rate := envNumber(t, envRate, defaultRate)
	clients := int(envNumber(t, envClients, defaultClients))

	s := newStack(t, 20)
	listen, padmin := freeAddr(t), freeAddr(t)
	proxy := s.spawn("proxy", padmin, s.proxyArgs(listen, padmin)...)
	// Archiver a is never killed: its memory is measured. b is killed and
	// restarted; its chain continues across restarts.
	aAdmin, bAdmin := freeAddr(t), freeAddr(t)
	archA := s.spawn("archive-a", aAdmin, s.archiveArgs(aAdmin, "soak-a")...)
	archB := s.spawn("archive-b", bAdmin, s.archiveArgs(bAdmin, "soak-b")...)
	idleBefore := [2]float64{proxy.metric("go_goroutines"), archA.metric("go_goroutines")}

	hc, tr, base := s.client(listen, clients, rate)
	ctx, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	start := time.Now()
	var proxyS, archS sampler
	go proxyS.run(ctx, start, proxy.p.Pid(), "http://"+padmin+"/metrics", 2*time.Second)
	go archS.run(ctx, start, archA.p.Pid(), "http://"+aAdmin+"/metrics", 2*time.Second)
	tf := startTraffic(s.sim, s.simURL, hc, tr, clients, 100)

	// Faults from 10% of the run to 75%, in turn; the last quarter is
	// quiet, so the end readings show what the faults left behind.
	alive := func() {
		t.Helper()
		for _, pr := range []*proc{proxy, archA, archB} {
			if pr.exited() {
				t.Fatalf("%s exited during the run: %v\n%s", pr.name, pr.p.Err(), pr.tail(3000))
			}
		}
	}
	sleepUntil := func(at time.Time) {
		for time.Now().Before(at) {
			alive()
			time.Sleep(min(time.Second, time.Until(at)))
		}
	}
	interval := max(10*time.Second, dur/20)
	faults := map[string]int{}
	var spooled, storeErrs float64
	for at := start.Add(dur / 10); at.Before(start.Add(dur * 3 / 4)); at = at.Add(interval) {
		sleepUntil(at)
		kind := []string{"nats", "s3", "archiver"}[(faults["nats"]+faults["s3"]+faults["archiver"])%3]
		switch kind {
		case "nats":
			before := proxy.metric("mdtap_spool_appends_total")
			s.ns.Stop() // the proxy spools; the archivers wait
			sleepUntil(time.Now().Add(5 * time.Second))
			s.ns.Restart() // the spool drains
			s.waitReady(proxy, 60*time.Second)
			spooled += proxy.metric("mdtap_spool_appends_total") - before
		case "s3":
			before := archA.metric("mdtap_archive_errors_total") + archB.metric("mdtap_archive_errors_total")
			s.s3.Stop() // the archivers retry; records wait in the stream
			sleepUntil(time.Now().Add(8 * time.Second))
			s.s3.Restart()
			storeErrs += archA.metric("mdtap_archive_errors_total") + archB.metric("mdtap_archive_errors_total") - before
		case "archiver":
			if err := archB.p.Stop(syscall.SIGKILL, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second)
			archB = s.restart(archB)
		}
		faults[kind]++
		sent, done := tr.counts()
		t.Logf("%6.1fs fault %d: %s (exchanges sent %d, completed %d)", time.Since(start).Seconds(),
			faults["nats"]+faults["s3"]+faults["archiver"], kind, sent, done)
	}
	sleepUntil(start.Add(dur))
	tf.stop()
	stopSampling()
	trafficTime := time.Since(start)
	sent, completed, statuses, failed := tr.snapshot()
	base.CloseIdleConnections()

	// Drain: the proxy's queue and spool empty, the stream fully archived.
	drainStart := time.Now()
	js := s.ns.JetStream(t)
	for deadline := time.Now().Add(5 * time.Minute); ; {
		alive()
		pending := proxy.metric("mdtap_capture_queue_depth") + proxy.metric("mdtap_spool_records") + proxy.metric("mdtap_publish_in_flight")
		if pending == 0 {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := js.Consumer(cctx, "MDTAP", "mdtap-archive")
			if err == nil {
				ci, err := c.Info(cctx)
				if err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 {
					cancel()
					break
				}
			}
			cancel()
		}
		if time.Now().After(deadline) {
			t.Fatalf("not drained after 5m: proxy queue+spool+in flight %g", pending)
		}
		time.Sleep(time.Second)
	}
	drainTime := time.Since(drainStart)

	// Reconcile on the archive itself.
	u, err := mdtap.ParseStoreURL(s.storeURL)
	if err != nil {
		t.Fatal(err)
	}
	store, err := s3store.New(u, s3store.Options{AccessKey: s.s3.AccessKey(), SecretKey: s.s3.SecretKey()})
	if err != nil {
		t.Fatal(err)
	}
	arch := readArchive(t, store)
	byTran := map[string]map[string]bool{}
	for id, tran := range arch.ids {
		if byTran[tran] == nil {
			byTran[tran] = map[string]bool{}
		}
		byTran[tran][id] = true
	}
	var missing, multi, unsent, notCompleted []string
	for tran := range completed {
		switch n := len(byTran[tran]); {
		case n == 0:
			missing = append(missing, tran)
		case n > 1:
			multi = append(multi, tran)
		}
	}
	for tran := range byTran {
		switch {
		case !sent[tran]:
			unsent = append(unsent, tran)
		case !completed[tran]:
			notCompleted = append(notCompleted, tran) // the client saw an error; the proxy had the exchange
		}
	}
	chains, problems := verifyChains(t, store)

	// Stop the children as an operator would, then scan what they wrote.
	for _, pr := range []*proc{proxy, archA, archB} {
		if err := pr.p.Stop(syscall.SIGTERM, 40*time.Second); err != nil || pr.p.Err() != nil {
			t.Errorf("%s on SIGTERM: %v %v\n%s", pr.name, err, pr.p.Err(), pr.tail(2000))
		}
	}
	customers, subjects := tf.walked()
	values := append(s.sim.SensitiveValues(customers...), subjects...)
	scan := leakcheck.New(values)
	scanStart := time.Now()
	files, size, findings, err := scan.ScanDirs(s.dir, s.ns.StoreDir(), s.s3.Root(), filepath.Dir(s.s3.LogPath()))
	if err != nil {
		t.Fatal(err)
	}

	// The numbers.
	var codes []string
	for c, n := range statuses {
		codes = append(codes, fmt.Sprintf("%d:%d", c, n))
	}
	sort.Strings(codes)
	t.Logf("soak: traffic %s, %d clients paced at %.0f exchanges/s, %d walks (%d failed); drain %s",
		trafficTime.Round(time.Second), clients, rate, tf.walks.Load(), tf.walkErrs.Load(), drainTime.Round(time.Second))
	for _, e := range tf.firstErrs {
		t.Logf("soak: walk error: %s", e)
	}
	t.Logf("soak: exchanges sent %d, completed %d (status %s), client-side failures %d", len(sent), len(completed), strings.Join(codes, " "), failed)
	t.Logf("soak: records archived: %d distinct ids, %d lines, %d duplicates removed by id, %d objects, chains %v (%d problems besides unlisted objects, %d unlisted objects)",
		len(arch.ids), arch.lines, arch.lines-len(arch.ids), arch.objects, chains, problems.other, problems.unlisted)
	t.Logf("soak: reconciliation: completed %d, archived distinct %d; completed but missing %d, archived under several ids %d, archived but never sent %d, archived but not completed by the client %d",
		len(completed), len(arch.ids), len(missing), len(multi), len(unsent), len(notCompleted))
	t.Logf("soak: faults injected %d: nats restart %d (records spooled %.0f), s3 stop/start %d (archiver store errors %.0f), archiver kill -9 %d",
		faults["nats"]+faults["s3"]+faults["archiver"], faults["nats"], spooled, faults["s3"], storeErrs, faults["archiver"])
	warm, end := dur/5, dur*9/10
	for _, m := range []struct {
		name string
		s    *sampler
		idle float64
	}{{"proxy", &proxyS, idleBefore[0]}, {"archive-a", &archS, idleBefore[1]}} {
		b, e := m.s.window(warm, warm+dur/10), m.s.window(end, dur+time.Minute)
		peak, gmax := m.s.max()
		rg, gg := growth(float64(b.rss), float64(e.rss)), growth(b.goroutines, e.goroutines)
		t.Logf("soak: %s RSS %.1f MiB after warm-up → %.1f MiB at the end (%+.1f%%; max sampled %.1f MiB, VmHWM %.1f MiB; heap in use %.1f → %.1f MiB); goroutines %.0f → %.0f (%+.1f%%; max %.0f, idle before traffic %.0f); samples %d/%d, failed reads %d",
			m.name, mib(b.rss), mib(e.rss), rg, mib(peak), mib(m.s.peak), b.heap/(1<<20), e.heap/(1<<20), b.goroutines, e.goroutines, gg, gmax, m.idle, b.n, e.n, m.s.errs)
		tenths := m.s.trend(dur)
		t.Logf("soak: %s by tenth of the run: RSS MiB [%s] (anon [%s], file [%s]), heap in use MiB [%s], goroutines [%s]", m.name,
			formatTrend(tenths, func(w window) float64 { return mib(w.rss) }),
			formatTrend(tenths, func(w window) float64 { return mib(w.anon) }),
			formatTrend(tenths, func(w window) float64 { return mib(w.file) }),
			formatTrend(tenths, func(w window) float64 { return w.heap / (1 << 20) }),
			formatTrend(tenths, func(w window) float64 { return w.goroutines }))
		if b.n == 0 || e.n == 0 {
			t.Errorf("%s: no memory readings in a window", m.name)
			continue
		}
		if rg >= maxGrowth {
			t.Errorf("%s: RSS grew %.1f%% after the warm-up (limit %d%%)", m.name, rg, maxGrowth)
		}
		if e.goroutines > b.goroutines*(1+maxGrowth/100.0)+goroutineSlack {
			t.Errorf("%s: goroutines grew from %.0f to %.0f", m.name, b.goroutines, e.goroutines)
		}
	}
	t.Logf("soak: leak scan: %d sensitive values (%d encoded forms) of %d customers and their subject ids looked for in %d files (%.1f MiB, zstd decompressed too) in %s: %d found",
		scan.Len(), scan.Forms(), len(customers), files, mib(size), time.Since(scanStart).Round(time.Second), len(findings))

	for _, f := range findings {
		t.Errorf("leak: %s in %s", f.Value, f.File)
	}
	if len(completed) == 0 {
		t.Fatal("no exchange completed")
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("%d completed exchanges not archived, first %s", len(missing), missing[0])
	}
	if len(multi) > 0 || len(unsent) > 0 {
		t.Errorf("%d exchanges archived under several record ids, %d records of exchanges never sent", len(multi), len(unsent))
	}
	if len(arch.ids) != len(completed)+len(notCompleted) {
		t.Errorf("distinct records %d != completed exchanges %d + exchanges the client saw fail %d", len(arch.ids), len(completed), len(notCompleted))
	}
	if problems.other > 0 {
		t.Errorf("chain verification: %d problems besides unlisted objects", problems.other)
	}
}

// archived is what the archive holds: record id → tran id.
type archived struct {
	ids     map[string]string
	lines   int
	objects int
}

func readArchive(t *testing.T, store archive.Store) archived {
	t.Helper()
	ctx := context.Background()
	a := archived{ids: map[string]string{}}
	for info, err := range archive.Walk(ctx, store, archive.RecordsDir+"/", "") {
		if err != nil {
			t.Fatal(err)
		}
		lines, err := archive.ReadObject(ctx, store, info.Key)
		if err != nil {
			t.Fatal(err)
		}
		a.objects++
		for _, l := range lines {
			var r struct {
				ID     string `json:"id"`
				TranID string `json:"tran_id"`
			}
			if err := json.Unmarshal(l, &r); err != nil || r.ID == "" {
				t.Fatalf("%s: a line without a record id: %v", info.Key, err)
			}
			a.lines++
			a.ids[r.ID] = r.TranID
		}
	}
	return a
}

type chainProblems struct{ unlisted, other int }

// verifyChains verifies every manifest chain. An archiver killed mid-batch
// may leave objects no manifest names (their records were stored again),
// which verification reports as unlisted; anything else is a problem.
func verifyChains(t *testing.T, store archive.Store) ([]string, chainProblems) {
	t.Helper()
	ctx := context.Background()
	chains, err := archive.ListChains(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	var p chainProblems
	for _, ch := range chains {
		rep, err := archive.VerifyChain(ctx, store, nil, ch)
		if err != nil {
			t.Fatal(err)
		}
		for _, pr := range rep.Problems {
			if pr.Kind == archive.ProblemUnlistedObject {
				p.unlisted++
				continue
			}
			p.other++
			t.Logf("chain %s: %+v", ch, pr)
		}
	}
	return chains, p
}
