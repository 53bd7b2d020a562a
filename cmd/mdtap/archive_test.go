package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/mdtap/mdtap/archive"
	"github.com/mdtap/mdtap/archive/storetest"
	"github.com/mdtap/mdtap/internal/natstest"
	"github.com/mdtap/mdtap/internal/s3test"
	"github.com/mdtap/mdtap/internal/simclient"
	"github.com/mdtap/mdtap/stream"
)

// The chain heads live in a real NATS key-value bucket; the adapter must pass
// the same conformance test as any HeadStore.
func TestHeadsAdapterConformance(t *testing.T) {
	storetest.RunHeadStore(t, func(t *testing.T) archive.HeadStore {
		ns := natstest.Start(t)
		kv, err := stream.OpenKV(context.Background(), ns.Conn(t), "", 1)
		if err != nil {
			t.Fatal(err)
		}
		return headsAdapter{kv}
	})
}

// countArchived reads every object the store holds and returns the distinct
// record ids, as the audit will (duplicates removed by id).
func countArchived(t *testing.T, store archive.Store) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	ids := map[string][]byte{}
	for info, err := range archive.Walk(ctx, store, archive.RecordsDir+"/", "") {
		if err != nil {
			t.Fatal(err)
		}
		lines, err := archive.ReadObject(ctx, store, info.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			id, err := archive.RecordID(l)
			if err != nil {
				t.Fatal(err)
			}
			ids[id] = l
		}
	}
	return ids
}

// Proxy → JetStream → `mdtap archive` → object store, on real servers: every
// exchange ends up archived once (after de-duplication), and every chain
// verifies.
func TestArchiveCommandEndToEnd(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) {
			st := startProxyStack(t, nil)
			var storeURL string
			if kind == "file" {
				storeURL = "file://" + t.TempDir() + "/archive"
			} else {
				s3 := s3test.Start(t)
				t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey())
				t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey())
				storeURL = s3.StoreURL("mdtap-archive", "prod")
			}
			adminAddr := freePort(t)
			logs := backgroundEnv(t, map[string]string{"AWS_ACCESS_KEY_ID": os.Getenv("AWS_ACCESS_KEY_ID"), "AWS_SECRET_ACCESS_KEY": os.Getenv("AWS_SECRET_ACCESS_KEY")},
				"archive", "--nats", st.ns.URL(), "--store", storeURL, "--create-bucket", "--batch-max-age", "200ms",
				"--admin-listen", adminAddr, "--chain", "test-archiver")
			waitHTTP(t, "http://"+adminAddr+"/readyz", logs)

			c := simclient.New(st.simURL, st.client)
			c.Sim = st.sim
			if err := c.Walk(context.Background(), 3, 500); err != nil {
				t.Fatal(err)
			}
			store, err := openStore(context.Background(), storeURL, "", false)
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			var ids map[string][]byte
			for {
				ids = countArchived(t, store)
				if int64(len(ids)) >= c.Exchanges() || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if int64(len(ids)) != c.Exchanges() {
				t.Fatalf("%d records archived, want %d:\n%s", len(ids), c.Exchanges(), logs.String())
			}
			kv, err := stream.OpenKV(context.Background(), st.ns.Conn(t), "", 1)
			if err != nil {
				t.Fatal(err)
			}
			// The last batch's manifests follow its objects: verify once the
			// archiver has written them.
			var rep archive.Report
			for {
				rep, err = archive.VerifyChain(context.Background(), store, headsAdapter{kv}, "test-archiver")
				if err == nil && rep.OK() || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil || !rep.OK() {
				t.Fatalf("verify chain: %v %+v", err, rep)
			}
			resp, err := http.Get("http://" + adminAddr + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkMetricsDocumented(t, string(body))
		})
	}
}
