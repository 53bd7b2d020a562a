package redact

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mdtap/mdtap"
)

// transactionsBody builds a deposit-transactions response of about size
// bytes, shaped as the simulator and SPEC §7.3 shape it.
func transactionsBody(size int) string {
	var b strings.Builder
	b.WriteString(`{"rsp_code":"00000","rsp_msg":"성공","next_page":"20240310120501000017","trans_cnt":0,"trans_list":[`)
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"trans_dtime":"202403%02d183022","trans_no":"%06d","trans_type":"02","trans_class":"체크카드","currency_code":"KRW","trans_amt":%d,"balance_amt":%d,"trans_memo":"테스트편의점 %d"}`,
			1+i%28, i, 1000+i*7, 1487500-i*13, i)
	}
	b.WriteString(`]}`)
	return b.String()
}

func benchProtect(b *testing.B, size int, keys Sealer) {
	body := transactionsBody(size)
	r := New(builtinB(b), keys)
	rec := record("POST", "/v1/bank/accounts/deposit/transactions", nil, "application/json",
		`{"org_code":"TESTBK0001","account_num":"99900012345678","seqno":"1","from_date":"20240301","to_date":"20240315","limit":500}`,
		"application/json; charset=UTF-8", body)
	rec.Request.Headers["authorization"] = []string{"Bearer eyJhbGciOiJub25lIn0.FAKE.ACCESS"}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Protect(rec); err != nil {
			b.Fatal(err)
		}
	}
}

func builtinB(b *testing.B) *Policy {
	p, err := Load("builtin")
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// These run with the stdlib fake keys; keys_bench_test in the integration
// package measures the same bodies under Tink.
func BenchmarkProtect2KiBFake(b *testing.B)  { benchProtect(b, 2<<10, &fakeKeys{}) }
func BenchmarkProtect64KiBFake(b *testing.B) { benchProtect(b, 64<<10, &fakeKeys{}) }

// nopKeys isolates the walker's own cost from the cryptography's.
type nopKeys struct{}

var nopCT = []byte{1, 0, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}

func (nopKeys) Encrypt(pt, ad []byte) ([]byte, error)  { return nopCT, nil }
func (nopKeys) Tokenize(pt, ad []byte) ([]byte, error) { return nopCT, nil }
func (nopKeys) Hash(in []byte) (uint32, []byte, error) { return 1, nopCT[:16], nil }
func (nopKeys) Primary() mdtap.KeyIDs                  { return mdtap.KeyIDs{AEAD: 1, DAEAD: 1, PRF: 1} }

func BenchmarkProtect64KiBWalkOnly(b *testing.B) { benchProtect(b, 64<<10, nopKeys{}) }
