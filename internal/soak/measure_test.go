package soak

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mdtap/mdtap/internal/loadgen"
)

// sample is one reading of a process: resident memory (VmRSS) and the
// goroutine count its admin server reports (go_goroutines, from the
// Prometheus Go collector every mdtap registry serves).
type sample struct {
	at         time.Duration // since the traffic started
	rss        int64
	goroutines float64
	heap       float64 // go_memstats_heap_inuse_bytes: tells a heap that grows from memory merely kept
	// RssAnon and RssFile, the parts of VmRSS: RssFile is mostly the
	// binary's code, paged in as new paths run (the first fault of a kind).
	anon, file int64
}

// sampler reads one process every interval until stopped.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	peak    int64 // VmHWM at the last reading
	errs    int
}

func (s *sampler) run(ctx context.Context, start time.Time, pid int, metricsURL string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := loadgen.ReadProc(pid)
		anon, file := rssParts(pid)
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, merr := loadgen.ScrapeMetrics(sctx, metricsURL)
		cancel()
		s.mu.Lock()
		if err != nil || merr != nil {
			s.errs++
		} else {
			s.samples = append(s.samples, sample{at: time.Since(start), rss: st.RSS, goroutines: m["go_goroutines"], heap: m["go_memstats_heap_inuse_bytes"], anon: anon, file: file})
			s.peak = st.PeakRSS
		}
		s.mu.Unlock()
	}
}

// window summarises the readings taken in [from, to): the median of each,
// which a single reading during a fault does not move.
type window struct {
	n          int
	rss        int64
	goroutines float64
	heap       float64
	anon, file int64
}

func (s *sampler) window(from, to time.Duration) window {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rss, anon, file []int64
	var gs, hs []float64
	for _, x := range s.samples {
		if x.at >= from && x.at < to {
			rss = append(rss, x.rss)
			anon = append(anon, x.anon)
			file = append(file, x.file)
			gs = append(gs, x.goroutines)
			hs = append(hs, x.heap)
		}
	}
	if len(rss) == 0 {
		return window{}
	}
	slices.Sort(rss)
	slices.Sort(gs)
	slices.Sort(hs)
	slices.Sort(anon)
	slices.Sort(file)
	mid := len(rss) / 2
	return window{n: len(rss), rss: rss[mid], goroutines: gs[mid], heap: hs[mid], anon: anon[mid], file: file[mid]}
}

func (s *sampler) max() (rss int64, goroutines float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.samples {
		rss = max(rss, x.rss)
		goroutines = max(goroutines, x.goroutines)
	}
	return rss, goroutines
}

func growth(from, to float64) float64 {
	if from == 0 {
		return 0
	}
	return (to - from) / from * 100
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// trend returns the medians of each tenth of the run, to show whether a
// growth levels off.
func (s *sampler) trend(run time.Duration) []window {
	var out []window
	for i := range 10 {
		out = append(out, s.window(run*time.Duration(i)/10, run*time.Duration(i+1)/10))
	}
	return out
}

func formatTrend(ws []window, f func(window) float64) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f", f(w))
	}
	return b.String()
}

// rssParts reads RssAnon and RssFile from /proc/PID/status (zero where
// the kernel does not report them).
func rssParts(pid int) (anon, file int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "RssAnon":
			anon = n << 10
		case "RssFile":
			file = n << 10
		}
	}
	return anon, file
}
