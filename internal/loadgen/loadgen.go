// Package loadgen is the machinery behind `mdtap bench proxy`: an HTTP load
// generator (closed loop for saturation, open loop at a fixed rate for
// latency), the MyData workloads it sends, a bare goproxy MITM relay that
// serves as the baseline, an embedded JetStream server, and readings of a
// process's memory and CPU from /proc.
//
// It is test support (internal/): the relay imports goproxy and the embedded
// server nats-server so that the production packages keep their one-SDK
// rule.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// RequestFunc builds the n-th request of a run (n counts from 0 across all
// workers). It is called concurrently.
type RequestFunc func(ctx context.Context, n uint64) (*http.Request, error)

// Options configure a run.
type Options struct {
	// Client sends the requests; its transport should keep at least
	// Concurrency idle connections per host, or the run measures handshakes.
	Client *http.Client
	// Concurrency is the number of workers, each with at most one request
	// outstanding.
	Concurrency int
	// Request builds each request.
	Request RequestFunc
	// Seq, when set, numbers requests across runs (so x-api-tran-id stays
	// unique); otherwise each run counts from 0.
	Seq *atomic.Uint64
}

// Result is what a run measured. Latencies exclude failed requests.
type Result struct {
	Requests int64         // completed with the expected status and a body read in full
	Errors   int64         // transport errors, unexpected status, short reads
	Elapsed  time.Duration // from the first send to the last completion
	Bytes    int64         // response body bytes of successful requests
	// Unsent counts the requests an open-loop run had due but never sent,
	// because the target fell so far behind that the run was cut off.
	Unsent int64
	// FirstError describes the first failure, for the report.
	FirstError string

	lat []time.Duration // sorted
}

// Rate is successful requests per second.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// ErrorRate is the share of attempts that failed.
func (r *Result) ErrorRate() float64 {
	if n := r.Requests + r.Errors; n > 0 {
		return float64(r.Errors) / float64(n)
	}
	return 0
}

// Percentile returns the latency at quantile q (0 < q ≤ 1), nearest rank;
// zero when nothing succeeded.
func (r *Result) Percentile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(q*float64(len(r.lat))+0.5) - 1
	i = max(0, min(i, len(r.lat)-1))
	return r.lat[i]
}

// worker state, merged at the end so the hot path takes no lock.
type tally struct {
	ok, errs, bytes int64
	lat             []time.Duration
	firstErr        error
}

func (t *tally) fail(err error) {
	t.errs++
	if t.firstErr == nil {
		t.firstErr = err
	}
}

func merge(tallies []*tally, elapsed time.Duration) *Result {
	r := &Result{Elapsed: elapsed}
	n := 0
	for _, t := range tallies {
		n += len(t.lat)
	}
	r.lat = make([]time.Duration, 0, n)
	for _, t := range tallies {
		r.Requests += t.ok
		r.Errors += t.errs
		r.Bytes += t.bytes
		r.lat = append(r.lat, t.lat...)
		if r.FirstError == "" && t.firstErr != nil {
			r.FirstError = t.firstErr.Error()
		}
	}
	slices.Sort(r.lat)
	return r
}

// do sends one request and reads its response in full; only 200 counts.
func (o *Options) do(ctx context.Context, n uint64) (int64, error) {
	req, err := o.Request(ctx, n)
	if err != nil {
		return 0, err
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return 0, err
	}
	nb, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s %s: HTTP %d", req.Method, req.URL.Path, resp.StatusCode)
	}
	return nb, nil
}

func (o *Options) next(local *atomic.Uint64) uint64 {
	if o.Seq != nil {
		return o.Seq.Add(1) - 1
	}
	return local.Add(1) - 1
}

func (o *Options) check() error {
	if o.Client == nil || o.Request == nil || o.Concurrency < 1 {
		return errors.New("loadgen: a client, a request builder and a concurrency ≥ 1 are required")
	}
	return nil
}

// Closed runs a closed loop for d: each of Concurrency workers sends a
// request as soon as its previous one completed. Its rate is the saturation
// throughput at that concurrency. ctx ends the run early.
func Closed(ctx context.Context, o Options, d time.Duration) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	var seq atomic.Uint64
	tallies := make([]*tally, o.Concurrency)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range tallies {
		t := &tally{lat: make([]time.Duration, 0, 1024)}
		tallies[w] = t
		wg.Go(func() {
			for ctx.Err() == nil {
				begin := time.Now()
				if !begin.Before(deadline) {
					return
				}
				nb, err := o.do(ctx, o.next(&seq))
				if err != nil {
					if ctx.Err() == nil {
						t.fail(err)
					}
					continue
				}
				t.ok++
				t.bytes += nb
				t.lat = append(t.lat, time.Since(begin))
			}
		})
	}
	wg.Wait()
	return merge(tallies, time.Since(start)), ctx.Err()
}

// Open runs an open loop for d: request i is due at start + i/rate whether
// or not earlier ones have completed, and its latency counts from when it
// was due, not from when a worker got to send it — a stall shows in the
// latency of every request it delayed (no coordinated omission). Concurrency
// bounds the requests outstanding; when all workers are busy, due requests
// wait and that wait is part of their latency. A target that cannot keep
// the rate falls behind; at 2d the run stops sending and counts what was
// still due as Unsent.
func Open(ctx context.Context, o Options, rate float64, d time.Duration) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if rate <= 0 {
		return nil, fmt.Errorf("loadgen: rate %g: want > 0", rate)
	}
	interval := float64(time.Second) / rate
	total := uint64(d.Seconds() * rate)
	var seq, slot atomic.Uint64
	tallies := make([]*tally, o.Concurrency)
	start := time.Now()
	cutoff := start.Add(2 * d)
	var wg sync.WaitGroup
	for w := range tallies {
		t := &tally{lat: make([]time.Duration, 0, 1024)}
		tallies[w] = t
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			for ctx.Err() == nil {
				i := slot.Add(1) - 1
				if i >= total || time.Now().After(cutoff) {
					return
				}
				due := start.Add(time.Duration(float64(i) * interval))
				if wait := time.Until(due); wait > 0 {
					timer.Reset(wait)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
				nb, err := o.do(ctx, o.next(&seq))
				if err != nil {
					if ctx.Err() == nil {
						t.fail(err)
					}
					continue
				}
				t.ok++
				t.bytes += nb
				t.lat = append(t.lat, time.Since(due))
			}
		})
	}
	wg.Wait()
	r := merge(tallies, time.Since(start))
	if sent := uint64(r.Requests + r.Errors); sent < total && ctx.Err() == nil {
		r.Unsent = int64(total - sent)
	}
	return r, ctx.Err()
}
