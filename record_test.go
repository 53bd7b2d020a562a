package mdtap_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/mdtap/mdtap"
)

func loadSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("docs/record.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("parse schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("record.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("record.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return s
}

func validateJSON(t *testing.T, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode record: %v", err)
	}
	return s.Validate(v)
}

var (
	testTime = mdtap.Timestamp{Time: time.Date(2026, 3, 15, 9, 30, 0, 123456789, time.UTC)}
	// A ciphertext with Tink's prefix for key 42; the rest is filler.
	fakeCT = append([]byte{1, 0, 0, 0, 42}, bytes.Repeat([]byte{0xAB}, 28)...)
)

func ptr[T any](v T) *T { return &v }

// sampleRecords builds records of every shape the schema must accept.
func sampleRecords() map[string]mdtap.Record {
	tok := mdtap.TokValue(fakeCT)
	hash := mdtap.HashValue(7, bytes.Repeat([]byte{1}, mdtap.HashBytes))
	base := func() mdtap.Record {
		return mdtap.Record{
			V: mdtap.SchemaVersion, ID: "01JQ0000000000000000000000", Time: testTime,
			DurationMS: 12.4, Service: "asset-sync", OrgCode: "TESTBK0001",
			Sector: mdtap.SectorBank, API: "/v1/bank/accounts",
			TranID: "TESTMD0001MA1B2C3D4E5F6G7", APIType: "scheduled", Transmission: mdtap.Scheduled,
		}
	}
	raw := base()
	raw.Request = mdtap.Request{
		Method: "GET", Host: "mydata-api.testbank.example", Path: "/v1/bank/accounts",
		Query:   map[string][]string{"org_code": {"TESTBK0001"}, "limit": {"500"}},
		Headers: map[string][]string{"authorization": {"Bearer FAKE"}, "x-api-tran-id": {"TESTMD0001MA1B2C3D4E5F6G7"}},
	}
	raw.Response = &mdtap.Response{
		Status:  200,
		Headers: map[string][]string{"content-type": {"application/json; charset=UTF-8"}},
		Payload: mdtap.Payload{
			BodyKind: mdtap.BodyJSON, BodyBytes: 90, CapturedBytes: 90,
			Body: json.RawMessage(`{"rsp_code":"00000","account_list":[{"account_num":"99900012345678"}]}`),
		},
		RspCode: "00000", RspMsg: "성공",
	}
	raw.TranIDEchoed = ptr(true)

	prot := base()
	prot.Subject = hash
	prot.Policy = "builtin@3f2a9c1d"
	prot.Keys = &mdtap.KeyIDs{AEAD: 42, DAEAD: 43, PRF: 7}
	prot.Unclassified = []string{"response.body.account_list[*].new_field"}
	prot.Sector, prot.API = mdtap.SectorCard, "/v1/card/cards/{card_id}/approval-domestic"
	prot.Request = mdtap.Request{
		Method: "GET", Host: "127.0.0.1:9443", Path: "/v1/card/cards/" + tok + "/approval-domestic",
		PathParams: map[string]string{"card_id": tok},
		Query:      map[string][]string{"org_code": {"TESTCD0001"}},
		Headers:    map[string][]string{"authorization": {hash}},
	}
	prot.Response = &mdtap.Response{
		Status: 200,
		Payload: mdtap.Payload{
			BodyKind: mdtap.BodyJSON, ContentEncoding: "gzip", BodyBytes: 5000, CapturedBytes: 5000, DecodedBytes: 21000,
			Body: json.RawMessage(`{"approved_list":[{"merchant_name":"` + mdtap.EncValue(fakeCT) + `","approved_amt":4800,` +
				`"card_num":"` + mdtap.MaskValue("************3456") + `","x":"` + mdtap.Dropped + `",` +
				`"y":"` + mdtap.ShredValue(mdtap.FormEnc, 42) + `","z":"` + mdtap.KeepString("mdtap:looks-protected") + `"}]}`),
		},
		RspCode: "00000",
	}

	form := base()
	form.Sector, form.API, form.Transmission = mdtap.SectorAuth, "/oauth/2.0/token", mdtap.UserInitiated
	form.Request = mdtap.Request{
		Method: "POST", Host: "127.0.0.1:9443", Path: "/oauth/2.0/token",
		Payload: mdtap.Payload{BodyKind: mdtap.BodyForm, BodyBytes: 80, CapturedBytes: 80,
			Body: json.RawMessage(`{"grant_type":["authorization_code"],"code":["` + mdtap.Dropped + `"]}`)},
	}
	form.Response = &mdtap.Response{Status: 400, OAuthError: "invalid_request"}

	opaque := base()
	opaque.Sector, opaque.API = mdtap.SectorUnknown, mdtap.APIUnknown
	opaque.Request = mdtap.Request{Method: "POST", Host: "127.0.0.1:9443", Path: mdtap.EncValue(fakeCT),
		Payload: mdtap.Payload{BodyKind: mdtap.BodyOpaque, OpaqueReason: mdtap.OpaqueNotJSON,
			BodyBytes: 3, CapturedBytes: 3, Body: json.RawMessage(`"` + mdtap.BlobValue(fakeCT) + `"`)}}
	opaque.Response = &mdtap.Response{Status: 200, Payload: mdtap.Payload{
		BodyKind: mdtap.BodyOpaque, OpaqueReason: mdtap.OpaqueTruncated, Truncated: true,
		BodyBytes: 10 << 20, CapturedBytes: 256 << 10, BodyDigest: hash,
		Body: json.RawMessage(`"` + mdtap.BlobValue(fakeCT) + `"`)}}

	failed := base()
	failed.Request = mdtap.Request{Method: "GET", Host: "127.0.0.1:1", Path: "/v1/bank/accounts"}
	failed.Error = "upstream: dial tcp 127.0.0.1:1: connect: connection refused"

	degraded := prot
	degraded.Degraded = mdtap.DegradeTooLarge
	degraded.Request = mdtap.Request{Method: "GET", Host: "127.0.0.1:9443", Path: prot.Request.Path,
		Payload: mdtap.Payload{BodyBytes: 0}}
	degraded.Response = &mdtap.Response{Status: 200, RspCode: "00000",
		Payload: mdtap.Payload{BodyBytes: 9 << 20, CapturedBytes: 256 << 10, Truncated: true, BodyDigest: hash}}

	return map[string]mdtap.Record{
		"raw json": raw, "protected": prot, "form and oauth error": form,
		"opaque and truncated": opaque, "transport error": failed, "degraded": degraded,
	}
}

func TestRecordsValidateAgainstSchema(t *testing.T) {
	schema := loadSchema(t)
	for name, rec := range sampleRecords() {
		t.Run(name, func(t *testing.T) {
			if err := rec.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			b, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if err := validateJSON(t, schema, b); err != nil {
				t.Fatalf("schema rejects %s:\n%v", b, err)
			}
			var back mdtap.Record
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			b2, _ := json.Marshal(back)
			if !bytes.Equal(b, b2) {
				t.Fatalf("round trip changed the record:\n got %s\nwant %s", b2, b)
			}
		})
	}
}

// The schema must reject what the contract forbids, or the test above proves nothing.
func TestSchemaRejects(t *testing.T) {
	schema := loadSchema(t)
	good, _ := json.Marshal(sampleRecords()["protected"])
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	resp := func(m map[string]any) map[string]any { return m["response"].(map[string]any) }
	cases := []struct {
		name string
		doc  []byte
	}{
		{"version 2", mutate(func(m map[string]any) { m["v"] = 2 })},
		{"lower-case id", mutate(func(m map[string]any) { m["id"] = strings.ToLower(m["id"].(string)) })},
		{"time without micros", mutate(func(m map[string]any) { m["time"] = "2026-03-15T09:30:00Z" })},
		{"sector outside vocabulary", mutate(func(m map[string]any) { m["sector"] = "shop" })},
		{"unknown top-level field", mutate(func(m map[string]any) { m["password"] = "x" })},
		{"unknown request field", mutate(func(m map[string]any) { m["request"].(map[string]any)["cookie"] = "x" })},
		{"no response and no error", mutate(func(m map[string]any) { delete(m, "response") })},
		{"subject not a hash", mutate(func(m map[string]any) { m["subject"] = "user-1234" })},
		{"truncated without digest", mutate(func(m map[string]any) { resp(m)["truncated"] = true; delete(resp(m), "body_digest") })},
		{"opaque without reason", mutate(func(m map[string]any) { resp(m)["body_kind"] = "opaque"; resp(m)["body"] = "x" })},
		{"body without kind", mutate(func(m map[string]any) { delete(resp(m), "body_kind") })},
		{"form body not arrays", mutate(func(m map[string]any) { resp(m)["body_kind"] = "form"; resp(m)["body"] = map[string]any{"a": "b"} })},
		{"transmission unknown", mutate(func(m map[string]any) { m["transmission"] = "regular" })},
		{"key id zero", mutate(func(m map[string]any) { m["keys"].(map[string]any)["aead"] = 0 })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := validateJSON(t, schema, tc.doc); err == nil {
				t.Fatalf("schema accepts %s", tc.doc)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name string
		edit func(r *mdtap.Record)
		want string
	}{
		{"version", func(r *mdtap.Record) { r.V = 0 }, "v is 0"},
		{"id", func(r *mdtap.Record) { r.ID = "not-a-ulid" }, "id"},
		{"time", func(r *mdtap.Record) { r.Time = mdtap.Timestamp{} }, "time"},
		{"sector", func(r *mdtap.Record) { r.Sector = "shop" }, "sector"},
		{"api", func(r *mdtap.Record) { r.API = "" }, "api"},
		{"transmission", func(r *mdtap.Record) { r.Transmission = "" }, "transmission"},
		{"status", func(r *mdtap.Record) { r.Response.Status = 42 }, "status"},
		{"captured beyond full", func(r *mdtap.Record) { r.Response.CapturedBytes = r.Response.BodyBytes + 1 }, "captured_bytes"},
		{"truncated without digest", func(r *mdtap.Record) { r.Response.Truncated = true; r.Response.BodyDigest = "" }, "body_digest"},
		{"no outcome", func(r *mdtap.Record) { r.Response = nil }, "neither response nor error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleRecords()["raw json"]
			resp := *r.Response
			r.Response = &resp
			tc.edit(&r)
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestTimestampEncoding(t *testing.T) {
	b, err := json.Marshal(mdtap.Timestamp{Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("KST", 9*3600))})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `"2026-01-01T18:04:05.000006Z"`; got != want {
		t.Fatalf("Marshal(Timestamp) = %s, want %s", got, want)
	}
	var ts mdtap.Timestamp
	if err := json.Unmarshal([]byte(`"2026-01-01T18:04:05.000006Z"`), &ts); err != nil {
		t.Fatal(err)
	}
	if ts.Nanosecond() != 6000 || ts.Location() != time.UTC {
		t.Fatalf("Unmarshal(Timestamp) = %v, want 6µs past, UTC", ts.Time)
	}
	if err := json.Unmarshal([]byte(`"yesterday"`), &ts); err == nil {
		t.Fatal("Unmarshal(yesterday) succeeded, want an error")
	}
}

func TestTransmissionOf(t *testing.T) {
	for in, want := range map[string]mdtap.Transmission{
		"scheduled": mdtap.Scheduled, "": mdtap.UserInitiated, "user-search": mdtap.UserInitiated,
		"irregular": mdtap.UserInitiated, "Scheduled": mdtap.UserInitiated,
	} {
		if got := mdtap.TransmissionOf(in); got != want {
			t.Errorf("TransmissionOf(%q) = %s, want %s", in, got, want)
		}
	}
}
