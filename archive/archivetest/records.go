package archivetest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/mdtap/mdtap"
)

// ID returns a well-formed record id (ULID) for time t, unique per n.
func ID(t time.Time, n uint64) string {
	var u ulid.ULID
	if err := u.SetTime(ulid.Timestamp(t)); err != nil {
		panic(err)
	}
	binary.BigEndian.PutUint64(u[8:], n)
	return u.String()
}

// Spec describes a generated record.
type Spec struct {
	ID      string // default ID(Time, seed)
	Time    time.Time
	Sector  mdtap.Sector // default bank
	Org     string       // org_code; empty for none
	Subject string       // subject blind index; empty for none
	// Size is the approximate size of the record's JSON; default 2 KiB.
	Size int
}

// Subject returns a well-formed subject blind index for n.
func Subject(n int) string {
	sum := make([]byte, mdtap.HashBytes)
	binary.BigEndian.PutUint64(sum, uint64(n))
	return mdtap.HashValue(1001, sum)
}

// Record returns a protected record's JSON, shaped as the redactor writes a
// deposit-transactions exchange: structure and kept fields in clear, the
// sensitive values as enc and tok forms holding random ciphertext (which does
// not compress). seed makes the ciphertext and the default id reproducible.
func Record(spec Spec, seed uint64) []byte {
	if spec.Sector == "" {
		spec.Sector = mdtap.SectorBank
	}
	if spec.Size == 0 {
		spec.Size = 2 << 10
	}
	if spec.ID == "" {
		spec.ID = ID(spec.Time, seed)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6d647461))
	ct := func(n int) []byte {
		b := make([]byte, 5+12+n+16) // Tink prefix, nonce, ciphertext, tag
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[0], b[1] = 1, 0
		return b
	}
	echoed := true
	rec := mdtap.Record{
		V:            mdtap.SchemaVersion,
		ID:           spec.ID,
		Time:         mdtap.Timestamp{Time: spec.Time.UTC()},
		DurationMS:   12.4,
		Service:      "mydata-app",
		OrgCode:      spec.Org,
		Sector:       spec.Sector,
		API:          "/v1/" + string(spec.Sector) + "/accounts/deposit/transactions",
		TranID:       fmt.Sprintf("1234567890M%014d", seed%1e14),
		TranIDEchoed: &echoed,
		APIType:      "user-search",
		Transmission: mdtap.UserInitiated,
		Subject:      spec.Subject,
		Request: mdtap.Request{
			Method: "POST",
			Host:   "api.testbank.example:443",
			Path:   "/v1/" + string(spec.Sector) + "/accounts/deposit/transactions",
			Headers: map[string][]string{
				"authorization":  {mdtap.HashValue(1001, ct(0)[:16])},
				"content-type":   {"application/json"},
				"x-api-tran-id":  {fmt.Sprintf("1234567890M%014d", seed%1e14)},
				"x-api-type":     {"user-search"},
				"content-length": {"118"},
			},
		},
		Response: &mdtap.Response{
			Status:  200,
			Headers: map[string][]string{"content-type": {"application/json; charset=UTF-8"}},
			RspCode: "00000",
			RspMsg:  "성공",
		},
		Policy: "builtin@3f2a9c1d",
		Keys:   &mdtap.KeyIDs{AEAD: 1001, DAEAD: 1002, PRF: 1003},
	}
	reqBody, _ := json.Marshal(map[string]any{
		"org_code":    spec.Org,
		"account_num": mdtap.TokValue(ct(16)),
		"seqno":       "1",
		"from_date":   "20260301",
		"to_date":     "20260315",
		"limit":       500,
	})
	rec.Request.Payload = mdtap.Payload{BodyKind: mdtap.BodyJSON, Body: reqBody, BodyBytes: 118, CapturedBytes: 118}

	// Fill the response body with transactions up to the size.
	base, _ := json.Marshal(rec)
	var b strings.Builder
	b.WriteString(`{"rsp_code":"00000","rsp_msg":"성공","next_page":null,"trans_cnt":0,"trans_list":[`)
	for i := 0; len(base)+b.Len() < spec.Size-300; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"trans_dtime":"202603%02d1830%02d","trans_no":%q,"trans_type":"02","trans_class":"체크카드","currency_code":"KRW","trans_amt":%q,"balance_amt":%q,"trans_memo":%q}`,
			1+i%28, i%60, mdtap.TokValue(ct(6)), mdtap.EncValue(ct(5)), mdtap.EncValue(ct(7)), mdtap.EncValue(ct(18)))
	}
	b.WriteString(`]}`)
	rec.Response.Payload = mdtap.Payload{BodyKind: mdtap.BodyJSON, Body: json.RawMessage(b.String()),
		BodyBytes: int64(b.Len()), CapturedBytes: int64(b.Len())}
	out, err := json.Marshal(rec)
	if err != nil {
		panic(err)
	}
	return out
}

// Records returns n records of about size bytes, one second apart from
// start, cycling through the sectors, orgs and subjects given (nil: bank, no
// org, no subject).
func Records(n int, start time.Time, size int, sectors []mdtap.Sector, orgs, subjects []string) [][]byte {
	out := make([][]byte, n)
	for i := range n {
		s := Spec{Time: start.Add(time.Duration(i) * time.Second), Size: size}
		if len(sectors) > 0 {
			s.Sector = sectors[i%len(sectors)]
		}
		if len(orgs) > 0 {
			s.Org = orgs[i%len(orgs)]
		}
		if len(subjects) > 0 {
			s.Subject = subjects[i%len(subjects)]
		}
		out[i] = Record(s, uint64(i)+1)
	}
	return out
}
