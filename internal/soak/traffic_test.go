package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdtap/mdtap/internal/sim"
	"github.com/mdtap/mdtap/internal/simclient"
)

// errStopped ends the walks once the traffic phase is over. It is returned
// before a request is sent, so stopping never leaves an exchange half done
// (which the proxy would record without the client having completed it).
var errStopped = errors.New("soak: traffic stopped")

// tracker is the clients' transport: it paces all calls to one rate, gives
// every exchange a unique x-api-tran-id (simclient numbers per client, and
// several clients run at once) and notes which exchanges the client
// completed — got the provider's response and read its body to the end.
// The tran id is the client-side key the archive is reconciled on.
type tracker struct {
	base  http.RoundTripper
	every time.Duration // pacing: one call per interval, all clients together

	seq      atomic.Int64
	stopping atomic.Bool

	mu        sync.Mutex
	next      time.Time // pacing slot of the next call
	sent      map[string]bool
	completed map[string]bool
	statuses  map[int]int
	failed    int // transport errors and bodies cut short
}

func newTracker(base http.RoundTripper, rate float64) *tracker {
	return &tracker{base: base, every: time.Duration(float64(time.Second) / rate),
		sent: map[string]bool{}, completed: map[string]bool{}, statuses: map[int]int{}}
}

func (tr *tracker) pace() {
	tr.mu.Lock()
	now := time.Now()
	if tr.next.Before(now) {
		tr.next = now
	}
	at := tr.next
	tr.next = tr.next.Add(tr.every)
	tr.mu.Unlock()
	time.Sleep(time.Until(at))
}

func (tr *tracker) RoundTrip(req *http.Request) (*http.Response, error) {
	if tr.stopping.Load() {
		return nil, errStopped
	}
	tr.pace()
	if tr.stopping.Load() {
		return nil, errStopped
	}
	id := fmt.Sprintf("TESTMD0001M%014d", tr.seq.Add(1)) // AN(25), like simclient's
	r := req.Clone(req.Context())
	r.Header.Set("x-api-tran-id", id)
	tr.mu.Lock()
	tr.sent[id] = true
	tr.mu.Unlock()
	resp, err := tr.base.RoundTrip(r)
	if err != nil {
		tr.fail()
		return nil, err
	}
	resp.Body = &trackedBody{ReadCloser: resp.Body, done: func(err error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if err != nil {
			tr.failed++
			return
		}
		tr.completed[id] = true
		tr.statuses[resp.StatusCode]++
	}}
	return resp, nil
}

func (tr *tracker) fail() {
	tr.mu.Lock()
	tr.failed++
	tr.mu.Unlock()
}

// snapshot returns the tran ids sent and completed so far.
func (tr *tracker) snapshot() (sent, completed map[string]bool, statuses map[int]int, failed int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	sent, completed, statuses = map[string]bool{}, map[string]bool{}, map[int]int{}
	for k := range tr.sent {
		sent[k] = true
	}
	for k := range tr.completed {
		completed[k] = true
	}
	for k, v := range tr.statuses {
		statuses[k] = v
	}
	return sent, completed, statuses, tr.failed
}

func (tr *tracker) counts() (sent, completed int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.sent), len(tr.completed)
}

// trackedBody reports once whether the body was read to its end.
type trackedBody struct {
	io.ReadCloser
	once sync.Once
	done func(error)
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(func() { b.done(nil) })
	} else if err != nil {
		b.once.Do(func() { b.done(err) })
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.once.Do(func() { b.done(errors.New("closed before the end")) })
	return b.ReadCloser.Close()
}

// traffic runs concurrent simulated client services, each walking every API
// of every institution for one customer after another.
type traffic struct {
	tr        *tracker
	wg        sync.WaitGroup
	walks     atomic.Int64
	walkErrs  atomic.Int64
	mu        sync.Mutex
	firstErrs []string
	customers map[int]bool
	subjects  map[string]bool
}

// startTraffic starts workers clients through hc (whose transport is tr).
// Customer 0 holds the simulator's thousand-row lists; the walks use the
// others, with list pages of limit rows.
func startTraffic(s *sim.Simulator, base string, hc *http.Client, tr *tracker, workers, limit int) *traffic {
	tf := &traffic{tr: tr, customers: map[int]bool{}, subjects: map[string]bool{}}
	for w := range workers {
		tf.wg.Add(1)
		go func() {
			defer tf.wg.Done()
			c := simclient.New(base, hc)
			c.Sim = s
			for i := 0; !tr.stopping.Load(); i++ {
				cust := 1 + (w+i*workers)%(s.Customers()-1)
				subject := fmt.Sprintf("soak-user-%04d", cust)
				tf.mu.Lock()
				tf.customers[cust], tf.subjects[subject] = true, true
				tf.mu.Unlock()
				c.Header = http.Header{"X-Mdtap-Subject": {subject}}
				err := c.Walk(context.Background(), cust, limit)
				if errors.Is(err, errStopped) || tr.stopping.Load() {
					return
				}
				tf.walks.Add(1)
				if err != nil {
					tf.walkErrs.Add(1)
					tf.mu.Lock()
					if len(tf.firstErrs) < 5 {
						tf.firstErrs = append(tf.firstErrs, err.Error())
					}
					tf.mu.Unlock()
					time.Sleep(100 * time.Millisecond) // do not spin on a broken path
				}
			}
		}()
	}
	return tf
}

// stop ends the traffic: no new call is sent, calls under way complete.
func (tf *traffic) stop() {
	tf.tr.stopping.Store(true)
	tf.wg.Wait()
}

func (tf *traffic) walked() (customers []int, subjects []string) {
	tf.mu.Lock()
	defer tf.mu.Unlock()
	for c := range tf.customers {
		customers = append(customers, c)
	}
	for s := range tf.subjects {
		subjects = append(subjects, s)
	}
	return customers, subjects
}
