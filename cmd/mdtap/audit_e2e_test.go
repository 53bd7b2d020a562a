package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdtap/mdtap"
	"github.com/mdtap/mdtap/internal/simclient"
)

// auditLines runs `mdtap audit query` and returns the records it printed.
func auditLines(t *testing.T, args ...string) ([]mdtap.Record, string) {
	t.Helper()
	out, errOut, code := mdtapRun(t, "", append([]string{"audit", "query"}, args...)...)
	if code != 0 {
		t.Fatalf("audit query %v: exit %d\n%s", args, code, errOut)
	}
	var recs []mdtap.Record
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r mdtap.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit output line is not a record: %v", err)
		}
		recs = append(recs, r)
	}
	return recs, out
}

// The end-to-end audit: simulator → proxy → JetStream → archiver →
// store, then `audit query` by subject, org, api, tran id and time range
// returns exactly the expected records; --decrypt restores account numbers
// and names under each customer's own keys; the access log holds the
// entries and no plaintext; forgetting one customer shreds only theirs.
func TestAuditEndToEnd(t *testing.T) {
	st := startProxyStack(t, nil, "--subject-keys")
	store := "file://" + filepath.Join(t.TempDir(), "archive")
	archAdmin := freePort(t)
	alogs := background(t, "archive", "--nats", st.ns.URL(), "--store", store, "--create-bucket",
		"--batch-max-age", "200ms", "--admin-listen", archAdmin, "--chain", "e2e")
	waitHTTP(t, "http://"+archAdmin+"/readyz", alogs)

	from := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	type sent struct{ tran, subject, path, org string }
	var exchanges []sent
	c := simclient.New(st.simURL, st.client) // one client: tran ids stay unique
	c.Sim = st.sim
	for _, cust := range []struct {
		n       int
		subject string
	}{{2, "customer-A"}, {3, "customer-B"}} {
		c.Header = http.Header{"X-Mdtap-Subject": {cust.subject}}
		c.OnExchange = func(ex simclient.Exchange) {
			exchanges = append(exchanges, sent{ex.ReqHeader.Get("x-api-tran-id"), cust.subject, ex.URL.Path, ex.URL.Query().Get("org_code")})
		}
		if err := c.Walk(context.Background(), cust.n, 500); err != nil {
			t.Fatal(err)
		}
	}
	to := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	window := []string{"--store", store, "--from", from, "--to", to, "--keys", st.keyDir}
	deadline := time.Now().Add(30 * time.Second)
	for {
		all, _ := auditLines(t, window...)
		if len(all) >= len(exchanges) || time.Now().After(deadline) {
			if len(all) != len(exchanges) {
				t.Fatalf("audit found %d records, want %d", len(all), len(exchanges))
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantA := 0
	for _, e := range exchanges {
		if e.subject == "customer-A" {
			wantA++
		}
	}
	byA, _ := auditLines(t, append(window, "--subject", "customer-A")...)
	if len(byA) != wantA {
		t.Fatalf("--subject customer-A: %d records, want %d", len(byA), wantA)
	}
	for i := 1; i < len(byA); i++ {
		if byA[i].Time.Before(byA[i-1].Time.Time) {
			t.Fatal("records not in time order")
		}
	}
	one, _ := auditLines(t, append(window, "--tran-id", exchanges[5].tran)...)
	if len(one) != 1 || one[0].TranID != exchanges[5].tran {
		t.Fatalf("--tran-id: %d records", len(one))
	}
	wantAccounts := 0
	for _, e := range exchanges {
		if e.path == "/v1/bank/accounts" && e.org == "TESTBK0001" {
			wantAccounts++
		}
	}
	accts, _ := auditLines(t, append(window, "--org", "TESTBK0001", "--api", "/v1/bank/accounts")...)
	if len(accts) != wantAccounts || wantAccounts == 0 {
		t.Fatalf("--org TESTBK0001 --api /v1/bank/accounts: %d records, want %d", len(accts), wantAccounts)
	}

	// Decrypt: customer A's account numbers and name come back.
	secretsA := st.sim.SensitiveValues(2)
	custA, _ := st.sim.Customer(2)
	decrypt := append(window, "--subject", "customer-A", "--decrypt", "--actor", "auditor-kim", "--reason", "FSS inquiry 2026-117", "--nats", st.ns.URL())
	_, clear := auditLines(t, decrypt...)
	if !strings.Contains(clear, custA.Name) || !strings.Contains(clear, custA.CI) {
		t.Fatal("--decrypt did not restore the customer's name and CI")
	}
	restored := 0
	for _, v := range secretsA {
		if len(v) >= 10 && strings.Contains(clear, v) {
			restored++
		}
	}
	if restored < 5 {
		t.Fatalf("--decrypt restored only %d of the customer's sensitive values", restored)
	}
	logOut, _, code := mdtapRun(t, "", "audit", "log", "--store", store)
	if code != 0 || !strings.Contains(logOut, "auditor-kim") || !strings.Contains(logOut, "FSS inquiry 2026-117") {
		t.Fatalf("audit log: exit %d, entry missing", code)
	}
	if strings.Contains(logOut, custA.Name) || strings.Contains(logOut, "customer-A") {
		t.Fatal("the access log holds plaintext (a name or the subject id)")
	}

	// Consent withdrawal: forget customer A; their values are shredded, B's intact.
	if out, errOut, code := mdtapRun(t, "", "keys", "forget", "--subject", "customer-A", "--dir", st.keyDir, "--nats", st.ns.URL()); code != 0 {
		t.Fatalf("keys forget: %d %s %s", code, out, errOut)
	}
	shredded, shOut := auditLines(t, decrypt...)
	if len(shredded) != wantA || !strings.Contains(shOut, "mdtap:shred:v1:") || strings.Contains(shOut, custA.CI) || strings.Contains(shOut, custA.Name) {
		t.Fatalf("after forget: %d records; shredded values expected, plaintext not", len(shredded))
	}
	custB, _ := st.sim.Customer(3)
	_, clearB := auditLines(t, append(window, "--subject", "customer-B", "--decrypt", "--actor", "auditor-kim", "--reason", "r", "--nats", st.ns.URL())...)
	if !strings.Contains(clearB, custB.CI) || strings.Contains(clearB, "mdtap:shred:v1:") {
		t.Fatal("forgetting customer A touched customer B's data")
	}
	if _, errOut, code := mdtapRun(t, "", "audit", "verify", "--store", store, "--nats", st.ns.URL()); code != 0 {
		t.Fatalf("audit verify: exit %d\n%s", code, errOut)
	}
}

// A rotation under load: the proxy keeps serving (no failed request),
// records switch to the new key within seconds, the audit decrypts records
// from before and after; destroying the old key then shreds exactly what
// was encrypted under it, and the audit still succeeds.
func TestRotationUnderLoadThenDestroy(t *testing.T) {
	e := newFaultEnv(t, "")
	listen, adminAddr, archAdmin := freePort(t), freePort(t), freePort(t)
	plogs := background(t, e.proxyArgs(listen, adminAddr, "--keys-watch", "200ms")...)
	waitHTTP(t, "http://"+adminAddr+"/readyz", plogs)
	alogs := background(t, e.archiveArgs(archAdmin)...)
	waitHTTP(t, "http://"+archAdmin+"/readyz", alogs)
	from := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)

	out, _, code := mdtapRun(t, "", "keys", "list", "--dir", e.keyDir, "--json")
	var before []struct {
		Purpose string `json:"purpose"`
		KeyID   uint32 `json:"key_id"`
		Status  string `json:"status"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &before) != nil {
		t.Fatalf("keys list: %d %s", code, out)
	}
	var oldAEAD uint32
	for _, k := range before {
		if k.Purpose == "aead" && k.Status == "primary" {
			oldAEAD = k.KeyID
		}
	}

	l := e.startLoad(e.client(listen), 4)
	l.waitCalls(t, 60)
	out, errOut, code := mdtapRun(t, "", "keys", "rotate", "--dir", e.keyDir, "--purpose", "aead")
	if code != 0 {
		t.Fatalf("keys rotate: %d %s", code, errOut)
	}
	var newAEAD uint32
	if _, err := fmt.Sscan(strings.TrimSpace(out), &newAEAD); err != nil || newAEAD == 0 || newAEAD == oldAEAD {
		t.Fatalf("keys rotate printed %q", out)
	}
	// Records switch to the new key within seconds.
	store, _ := openStore(context.Background(), e.storeURL, "", false)
	switched := time.Now()
	for deadline := time.Now().Add(15 * time.Second); ; {
		found := false
		for _, line := range countArchived(t, store) {
			var r mdtap.Record
			json.Unmarshal(line, &r)
			if r.Keys != nil && r.Keys.AEAD == newAEAD {
				found = true
				break
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no record under the new key 15s after the rotation")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("records under the new key %.1fs after the rotation", time.Since(switched).Seconds())
	l.waitCalls(t, 60)
	accepted := l.finish()
	if n := l.refused.Load(); n > 0 {
		t.Fatalf("%d requests failed during the rotation", n)
	}
	e.waitArchived(t, accepted, plogs, alogs)

	to := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	query := []string{"--store", e.storeURL, "--from", from, "--to", to, "--keys", e.keyDir,
		"--decrypt", "--actor", "security-lee", "--reason", "rotation check"}
	recs, clear := auditLines(t, query...)
	keysSeen := map[uint32]int{}
	for _, r := range recs {
		keysSeen[r.Keys.AEAD]++
	}
	if keysSeen[oldAEAD] == 0 || keysSeen[newAEAD] == 0 || strings.Contains(clear, "mdtap:shred:v1:") || strings.Contains(clear, "mdtap:enc:v1:") {
		t.Fatalf("before destroy: records per key %v; every value must decrypt", keysSeen)
	}
	if _, errOut, code := mdtapRun(t, "", "keys", "destroy", "--dir", e.keyDir, "--key-id", fmt.Sprint(oldAEAD)); code != 0 {
		t.Fatalf("keys destroy: %s", errOut)
	}
	recs, _ = auditLines(t, query...)
	for _, r := range recs {
		b, _ := json.Marshal(r)
		shred := strings.Contains(string(b), fmt.Sprintf("mdtap:shred:v1:enc:%d", oldAEAD))
		if r.Keys.AEAD == oldAEAD && !shred {
			t.Fatalf("record %s under the destroyed key is not shredded", r.ID)
		}
		if r.Keys.AEAD == newAEAD && (shred || strings.Contains(string(b), "mdtap:enc:v1:")) {
			t.Fatalf("record %s under the new key lost values", r.ID)
		}
	}
}
