package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// flexString accepts a JSON string or number: clients send limit, seqno and
// the like either way (SPEC §8.5), and the simulator should not be the one
// that fails on it.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = flexString(n.String())
		return nil
	}
}

func (f flexString) String() string { return string(f) }

// postReq holds the fields of every resource POST body used here (SPEC §3);
// each handler checks the ones it needs.
type postReq struct {
	OrgCode         flexString `json:"org_code"`
	AccountNum      flexString `json:"account_num"`
	Seqno           flexString `json:"seqno"`
	SearchTimestamp flexString `json:"search_timestamp"`
	FromDate        flexString `json:"from_date"`
	ToDate          flexString `json:"to_date"`
	NextPage        flexString `json:"next_page"`
	Limit           flexString `json:"limit"`
	InsuNum         flexString `json:"insu_num"`
	SubKey          flexString `json:"sub_key"`
}

// decodeBody decodes one JSON object from the request body; anything
// malformed, empty or followed by more data is 40001.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF):
			return errf(codeBadParam, "empty body")
		case errors.As(err, &mbe):
			return errf(codeBadParam, "body too large")
		default:
			return errf(codeBadParam, "malformed JSON body")
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errf(codeBadParam, "data after JSON body")
	}
	return nil
}

// required returns 40001 naming the first empty field.
func required(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == "" {
			return errf(codeBadParam, fields[i]+" required")
		}
	}
	return nil
}
