package stream

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/mdtap/mdtap"
)

// encode must produce exactly what encoding/json does (without HTML
// escaping): archived bytes stay the same whichever encoder wrote them.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	recs := []*mdtap.Record{testRecord(1), testRecord(2), testRecord(77)}
	edge := testRecord(3)
	edge.Response.RspMsg = `<b>&"성공"</b>`
	edge.Response.Headers = map[string][]string{"z": {"1"}, "a": {"<&>"}, "m": nil}
	edge.Response.Truncated, edge.Response.DecodedBytes = false, 0
	edge.Request.Body = json.RawMessage(`{"b": [1, 2.50, true],  "a":"\u0041"}`)
	edge.Request.BodyKind = mdtap.BodyJSON
	recs = append(recs, edge)
	for i, rec := range recs {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rec); err != nil {
			t.Fatal(err)
		}
		got, err := encode(rec)
		if err != nil {
			t.Fatal(err)
		}
		if w := bytes.TrimSuffix(want.Bytes(), []byte("\n")); !bytes.Equal(got, w) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, got, w)
		}
	}
}
