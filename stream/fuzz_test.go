package stream

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mdtap/mdtap"
)

// FuzzDegradeMessage: the spool degrades what it reads back from its own
// files, which a crash or a disk may have damaged. Whatever the bytes,
// degrading gives an error or a record of the same id holding no payload
// value, and degrading that again changes nothing.
func FuzzDegradeMessage(f *testing.F) {
	f.Add("01JQ3V7ZC8M4W5X6Y7Z8A9B0CD", []byte(`{"v":1,"id":"01JQ3V7ZC8M4W5X6Y7Z8A9B0CD","time":"2026-03-15T09:30:00.123456Z","sector":"bank","api":"/v1/bank/accounts","transmission":"user_initiated","request":{"method":"GET","path":"/v1/bank/accounts","query":{"org_code":["TESTBK0001"]},"body_bytes":0,"captured_bytes":0},"response":{"status":200,"body_kind":"json","body":{"rsp_code":"00000"},"body_bytes":18,"captured_bytes":18},"policy":"builtin@3f2a9c1d"}`))
	if data, err := encode(testRecord(1)); err == nil {
		f.Add(testID(1), data)
	}
	f.Fuzz(func(t *testing.T, id string, data []byte) {
		out, err := degradeMessage(Message{ID: id, Subject: "mdtap.records.bank.TESTBK0001", Data: data}, mdtap.DegradeSpoolFull)
		if err != nil {
			return
		}
		var rec mdtap.Record
		if err := json.Unmarshal(out.Data, &rec); err != nil {
			t.Fatalf("degraded record does not decode: %v", err)
		}
		if out.ID != id || rec.ID != id || rec.Degraded != mdtap.DegradeSpoolFull || rec.Policy == "" {
			t.Fatalf("degraded record: id %s/%s, degraded %q, policy %q", out.ID, rec.ID, rec.Degraded, rec.Policy)
		}
		parts := []*mdtap.Payload{&rec.Request.Payload}
		if rec.Response != nil {
			parts = append(parts, &rec.Response.Payload)
			if rec.Response.Headers != nil {
				t.Fatal("response headers kept")
			}
		}
		for _, p := range parts {
			if len(p.Body) > 0 || p.BodyKind != "" {
				t.Fatal("a body kept")
			}
		}
		if rec.Request.Query != nil || rec.Request.Headers != nil || rec.Request.PathParams != nil || rec.Request.Path != "" || rec.Unclassified != nil {
			t.Fatal("request values kept")
		}
		again, err := degradeMessage(out, mdtap.DegradeSpoolFull)
		if err != nil || !bytes.Equal(again.Data, out.Data) {
			t.Fatalf("degrading twice: %v\n%s\n%s", err, out.Data, again.Data)
		}
	})
}
