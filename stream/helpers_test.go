package stream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/natstest"
)

// testID returns a valid, distinct record id (a ULID) for n.
func testID(n int) string {
	return fmt.Sprintf("01JQ8ZZZZZZZZZZZ%010d", n)
}

// protectedValue looks like an encrypt value of n plaintext bytes.
func protectedValue(r *rand.Rand, n int) string {
	b := make([]byte, n+5+28) // Tink prefix, nonce and tag
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return "mdtap:enc:v1:" + base64.RawURLEncoding.EncodeToString(b)
}

// testRecord returns a protected record of a bank account-list exchange,
// about 2 KiB encoded: the size PERFORMANCE.md measured with.
func testRecord(n int) *mdtap.Record {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	var accounts []map[string]any
	for i := 0; i < 3; i++ {
		accounts = append(accounts, map[string]any{
			"account_num":    protectedValue(r, 14),
			"is_consent":     true,
			"seqno":          protectedValue(r, 4),
			"is_foreign":     false,
			"prod_name":      protectedValue(r, 20),
			"account_type":   "1001",
			"account_status": "01",
		})
	}
	body, _ := json.Marshal(map[string]any{
		"rsp_code": "00000", "rsp_msg": "정상처리", "search_timestamp": 1718000000,
		"reg_date": "20240101", "next_page": nil, "account_cnt": len(accounts), "account_list": accounts,
	})
	echoed := true
	return &mdtap.Record{
		V:            mdtap.SchemaVersion,
		ID:           testID(n),
		Time:         mdtap.Timestamp{Time: time.Date(2026, 3, 15, 9, 30, 0, 123456000, time.UTC)},
		DurationMS:   12.4,
		Service:      "pfm-api",
		OrgCode:      "TESTBK0001",
		Sector:       mdtap.SectorBank,
		API:          "/v1/bank/accounts",
		TranID:       "TESTMD0001M00000000000001",
		TranIDEchoed: &echoed,
		APIType:      "user-search",
		Transmission: mdtap.UserInitiated,
		Subject:      "mdtap:hash:v1:1234:" + base64.RawURLEncoding.EncodeToString(make([]byte, 16)),
		Request: mdtap.Request{
			Method: "GET",
			Host:   "api.testbank.example:443",
			Path:   "/v1/bank/accounts",
			Query:  map[string][]string{"org_code": {"TESTBK0001"}, "search_timestamp": {"0"}, "limit": {"500"}},
			Headers: map[string][]string{
				"authorization": {"mdtap:hash:v1:1234:" + base64.RawURLEncoding.EncodeToString(make([]byte, 16))},
				"x-api-tran-id": {"TESTMD0001M00000000000001"},
				"x-api-type":    {"user-search"},
			},
		},
		Response: &mdtap.Response{
			Status:  200,
			Headers: map[string][]string{"content-type": {"application/json;charset=UTF-8"}, "x-api-tran-id": {"TESTMD0001M00000000000001"}},
			Payload: mdtap.Payload{BodyKind: mdtap.BodyJSON, Body: body, BodyBytes: int64(len(body)), CapturedBytes: int64(len(body))},
			RspCode: "00000",
			RspMsg:  "정상처리",
		},
		Policy: "builtin@3f2a9c1d",
		Keys:   &mdtap.KeyIDs{AEAD: 1234, DAEAD: 5678, PRF: 9012},
	}
}

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// ensureStream creates the records stream with cfg on srv.
func ensureStream(t testing.TB, js jetstream.JetStream, cfg StreamConfig) jetstream.Stream {
	t.Helper()
	s, err := Ensure(context.Background(), js, cfg)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return s
}

// failures records what OnFailure received.
type failures struct {
	mu   sync.Mutex
	msgs []Message
	errs []error
}

func (f *failures) add(m Message, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, m)
	f.errs = append(f.errs, err)
}

func (f *failures) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.msgs)
}

func (f *failures) snapshot() ([]Message, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Message(nil), f.msgs...), append([]error(nil), f.errs...)
}

type testPub struct {
	*Publisher
	reg  *prometheus.Registry
	fail *failures
}

// newTestPublisher publishes on a new connection to srv, with metrics in a
// fresh registry and failures collected.
func newTestPublisher(t *testing.T, srv *natstest.Server, o PublisherOptions) *testPub {
	t.Helper()
	tp := &testPub{reg: prometheus.NewRegistry(), fail: &failures{}}
	o.Registerer = tp.reg
	o.Logger = testLogger(t)
	if o.OnFailure == nil {
		o.OnFailure = tp.fail.add
	}
	p, err := NewPublisher(srv.Conn(t), o)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	tp.Publisher = p
	return tp
}

// errorCount returns mdtap_publish_errors_total{reason}.
func (tp *testPub) errorCount(t *testing.T, reason string) float64 {
	t.Helper()
	return metricValue(t, tp.reg, "mdtap_publish_errors_total", "reason", reason)
}

func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !hasLabel(m, label, value) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s{%s=%q} not found", name, label, value)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// waitFor polls cond every 10 ms until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(10 * time.Millisecond) // poll pacing
	}
}

// streamMsgs returns the number of messages in the stream.
func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return s.CachedInfo().State.Msgs
}

func flush(t *testing.T, p *Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func mustPublish(t *testing.T, p *Publisher, rec *mdtap.Record) {
	t.Helper()
	if err := p.Publish(context.Background(), rec); err != nil {
		t.Fatalf("Publish(%s): %v", rec.ID, err)
	}
}

func contains(s string, subs ...string) error {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return fmt.Errorf("%q does not contain %q", s, sub)
		}
	}
	return nil
}
