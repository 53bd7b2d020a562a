package sim

import (
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"
)

// kst is the providers' clock: MyData dates and *_dtime values are Korean
// local time without an offset. A fixed zone avoids depending on tzdata.
var kst = time.FixedZone("KST", 9*60*60)

const (
	dateLayout  = "20060102"
	dtimeLayout = "20060102150405"
	monthLayout = "200601"
)

// The lists that exercise pagination (see the package doc).
const (
	// BigCustomer is the customer holding the long lists.
	BigCustomer = 0
	// BigDepositOrg is the bank where BigCustomer's first account, a demand
	// deposit (account_type 1001), has BigDepositTransactions rows.
	BigDepositOrg = "TESTBK0001"
	// BigDepositTransactions is that account's row count, spread over the
	// three years before the data day.
	BigDepositTransactions = 1200
	// BigCardOrg is the card company where BigCustomer's first card has
	// BigCardApprovals domestic approvals over three years.
	BigCardOrg = "TESTCD0001"
	// BigCardApprovals is that card's approval count.
	BigCardApprovals = 1050
)

// Org is one simulated institution, as /mgmts/orgs lists it. Org has no
// domain: all institutions are served by the simulator's one listener, and
// /mgmts/orgs answers the requested host (see the package doc).
type Org struct {
	Code         string // org_code, aN(10)
	Industry     string // industry: bank, card, invest, insu, efin, telecom
	Type         string // org_type
	Name         string // org_name
	RegNo        string // org_regno, 10-digit business registration number
	CorpRegNo    string // corp_regno, 13 digits
	Address      string // address
	RelayOrgCode string // relay_org_code; empty when connected directly
	AuthType     string // auth_type
	acctPrefix   string // first digits of the institution's account numbers
}

func defaultOrgs() []Org {
	return []Org{
		{Code: "TESTBK0001", Industry: "bank", Type: "01", Name: "테스트은행", RegNo: "1048100001", CorpRegNo: "1101110000011", Address: "서울특별시 중구 세종대로 1", AuthType: "01", acctPrefix: "110"},
		{Code: "TESTBK0002", Industry: "bank", Type: "01", Name: "모의저축은행", RegNo: "1048100002", CorpRegNo: "1101110000022", Address: "부산광역시 남구 문현금융로 2", RelayOrgCode: "TESTRL0001", AuthType: "01", acctPrefix: "356"},
		{Code: "TESTCD0001", Industry: "card", Type: "01", Name: "테스트카드", RegNo: "1048100003", CorpRegNo: "1101110000033", Address: "서울특별시 종로구 종로 3", AuthType: "01"},
		{Code: "TESTIV0001", Industry: "invest", Type: "01", Name: "테스트증권", RegNo: "1048100004", CorpRegNo: "1101110000044", Address: "서울특별시 영등포구 여의대로 4", AuthType: "01", acctPrefix: "7"},
		{Code: "TESTIS0001", Industry: "insu", Type: "01", Name: "테스트생명", RegNo: "1048100005", CorpRegNo: "1101110000055", Address: "서울특별시 강남구 테헤란로 5", AuthType: "01"},
		{Code: "TESTEF0001", Industry: "efin", Type: "01", Name: "테스트페이", RegNo: "1048100006", CorpRegNo: "1101110000066", Address: "경기도 성남시 분당구 판교역로 6", AuthType: "01"},
		{Code: "TESTTC0001", Industry: "telecom", Type: "01", Name: "테스트텔레콤", RegNo: "1048100007", CorpRegNo: "1101110000077", Address: "서울특별시 중구 을지로 7", AuthType: "01"},
	}
}

// Orgs returns the simulated institutions, in a fixed order.
func (s *Simulator) Orgs() []Org { return slices.Clone(s.orgs) }

func (s *Simulator) org(code string) (int, *Org) {
	i, ok := s.orgByCode[code]
	if !ok {
		return -1, nil
	}
	return i, &s.orgs[i]
}

// rng is splitmix64. It is local rather than math/rand so that a seed means
// the same data on every Go version; statistical quality is irrelevant here.
type rng struct{ s uint64 }

// Stream tags keep the streams of different purposes independent, so that
// adding a field to one generator does not shift every other value.
const (
	tagProfile uint64 = iota + 1
	tagCI
	tagAssets
	tagDepositTx
	tagApprovals
	tagBills
	tagInvestTx
	tagEfinTx
	tagOperators
	tagMerchants
)

func newRNG(seed int64, parts ...uint64) *rng {
	r := &rng{s: uint64(seed) ^ 0x6a09e667f3bcc909}
	for _, p := range parts {
		r.s ^= p * 0x9e3779b97f4a7c15
		r.s = r.u64()
	}
	return r
}

func (r *rng) u64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a value in [0, n); n > 0.
func (r *rng) intn(n int) int { return int(r.u64() % uint64(n)) }

// between returns a value in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

func (r *rng) chance(pct int) bool { return r.intn(100) < pct }

func (r *rng) pick(list []string) string { return list[r.intn(len(list))] }

// digits returns n decimal digits, the first one non-zero.
func (r *rng) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.intn(10))
	}
	if n > 0 && b[0] == '0' {
		b[0] = byte('1' + r.intn(9))
	}
	return string(b)
}

// alnum returns n characters of [0-9A-Za-z].
func (r *rng) alnum(n int) string {
	const set = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = set[r.intn(len(set))]
	}
	return string(b)
}

// amount returns a value in [lo, hi] rounded down to a multiple of unit.
func (r *rng) amount(lo, hi, unit int64) int64 {
	v := lo + int64(r.u64()%uint64(hi-lo+1))
	return max(v/unit*unit, unit)
}

var (
	familyNames = []string{"김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권", "황", "안", "송", "류", "전", "홍", "고", "문", "양", "손", "배", "백", "허", "남", "심", "노", "하", "곽", "성", "차", "주", "우", "구", "민", "진"}
	givenSyls   = []string{"민", "서", "지", "현", "준", "우", "하", "윤", "도", "예", "수", "진", "영", "은", "호", "연", "유", "재", "성", "희", "경", "태", "승", "혜", "나", "아", "원", "정", "동", "상", "소", "채", "다", "시", "건", "주", "한", "결", "율", "린"}
	handles     = []string{"minji", "junho", "seoyeon", "dohyun", "haeun", "jiwoo", "yuna", "siwoo", "sumin", "hyunwoo", "eunji", "taeyang"}
	companies   = []string{"(주)한빛테크", "가온물산(주)", "(주)누리소프트", "모의상사(주)", "(주)별빛엔터", "바른건설(주)"}
	billMemos   = []string{"관리비", "통신요금", "보험료", "도시가스", "카드대금", "학원비"}
)

// koreanName returns family name + two-syllable given name in Hangul.
func koreanName(r *rng) string {
	a := r.intn(len(givenSyls))
	b := (a + 1 + r.intn(len(givenSyls)-1)) % len(givenSyls)
	return r.pick(familyNames) + givenSyls[a] + givenSyls[b]
}

// merchant is a shop card approvals and transactions name.
type merchant struct {
	name  string
	regno string // merchant_regno, 10 digits
}

var (
	merchantBrands   = []string{"테스트마트", "한빛커피", "모의편의점", "푸른약국", "새벽베이커리", "바른주유소", "하늘분식", "미래서점", "온누리한의원", "초록정육점", "가온식당", "나래문구", "다온헤어", "별빛치킨", "소담김밥", "해오름약국", "바다횟집", "솔향카페", "든든국밥", "우리동네세탁소"}
	merchantBranches = []string{"역삼점", "강남점", "판교점", "서면점", "둔산점", "수원역점", "홍대점", "잠실점", "일산점", "해운대점"}
	shops            = []string{"테스트쇼핑", "모의마켓", "한빛몰", "가상티켓", "누리배달", "별빛북스"}
	shopItems        = []string{"무선 이어폰", "러닝화 270mm", "도서 3권", "생수 2L x 12", "영화 예매 2매", "치킨 세트", "유아용 기저귀", "비타민 90정", "캠핑 의자", "커피 원두 1kg"}
)

// genMerchants builds the seed's shop table: every brand at one or two
// branches, each with its own business registration number.
func (s *Simulator) genMerchants() []merchant {
	r := newRNG(s.seed, tagMerchants)
	var out []merchant
	for _, b := range merchantBrands {
		for k := r.between(1, 2); k > 0; k-- {
			out = append(out, merchant{name: b + " " + r.pick(merchantBranches), regno: r.digits(10)})
		}
	}
	return out
}

// Customer is the identity of one simulated customer, for tests that build
// requests carrying it (password grant username, sign_request user_ci...).
type Customer struct {
	Index     int
	Name      string // Hangul name
	CI        string // 88-character base64 CI
	Phone     string // 010-xxxx-xxxx, as telecom_num carries it
	PhoneIntl string // +8210xxxxxxxx, as sign_request's phone_num carries it
	BirthDate string // YYYYMMDD
}

// Customer returns customer i, or false when i is out of range.
func (s *Simulator) Customer(i int) (Customer, bool) {
	if i < 0 || i >= s.nCust {
		return Customer{}, false
	}
	c := s.customer(i)
	return Customer{Index: i, Name: c.name, CI: c.ci, Phone: c.phone, PhoneIntl: intlPhone(c.phone), BirthDate: c.birthDate}, true
}

func intlPhone(p string) string {
	return "+82" + strings.ReplaceAll(strings.TrimPrefix(p, "0"), "-", "")
}

type custSlot struct {
	once sync.Once
	c    *customer
}

// customer is one customer's profile and asset lists; transactions are
// generated per request from the asset's stream.
type customer struct {
	idx       int
	name      string
	family    string // a relative, the second insured person on policies
	ci        string
	phone     string
	birthDate string
	assets    []*orgAssets // indexed like Simulator.orgs
}

type orgAssets struct {
	regDate  string
	bank     []*bankAccount
	cards    []*card
	invest   []*investAccount
	policies []*policy
	efin     *efinProfile
	lines    []telecomLine
}

func (s *Simulator) customer(i int) *customer {
	sl := &s.slots[i]
	sl.once.Do(func() { sl.c = s.genCustomer(i) })
	return sl.c
}

// ciFor derives customer i's CI: 64 bytes, base64 to 88 characters like a
// real CI. It has its own stream so the CI index needs no full profiles.
func (s *Simulator) ciFor(i int) string {
	r := newRNG(s.seed, tagCI, uint64(i))
	b := make([]byte, 64)
	for k := 0; k < 64; k += 8 {
		v := r.u64()
		for j := 0; j < 8; j++ {
			b[k+j] = byte(v >> (8 * j))
		}
	}
	return base64.StdEncoding.EncodeToString(b)
}

// customerByCI returns the customer whose CI is ci.
func (s *Simulator) customerByCI(ci string) (int, bool) {
	s.ciOnce.Do(func() {
		s.ciIndex = make(map[string]int, s.nCust)
		for i := 0; i < s.nCust; i++ {
			s.ciIndex[s.ciFor(i)] = i
		}
	})
	i, ok := s.ciIndex[ci]
	return i, ok
}

// customerFromKey maps arbitrary request values to a customer when nothing
// in the request names one, so that a given client always sees the same
// customer.
func (s *Simulator) customerFromKey(parts ...string) int {
	h := fnv.New64a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	// FNV's low bits barely move when only the last bytes differ (client
	// ids often do), so mix before reducing.
	r := rng{s: h.Sum64()}
	return int(r.u64() % uint64(s.nCust))
}

func (s *Simulator) genCustomer(i int) *customer {
	r := newRNG(s.seed, tagProfile, uint64(i))
	c := &customer{idx: i, name: koreanName(r), family: koreanName(r), ci: s.ciFor(i)}
	c.phone = fmt.Sprintf("010-%d-%s", r.between(2000, 9999), r.digits(4))
	c.birthDate = s.anchor.AddDate(-r.between(20, 75), 0, -r.intn(365)).Format(dateLayout)
	c.assets = make([]*orgAssets, len(s.orgs))
	for oi := range s.orgs {
		c.assets[oi] = s.genAssets(c, oi)
	}
	return c
}

// daysAgo is the data day minus n days, as YYYYMMDD.
func (s *Simulator) daysAgo(n int) string { return s.anchor.AddDate(0, 0, -n).Format(dateLayout) }

// --- bank ---

type bankAccount struct {
	num, seqno, prodName, accountType, status string
	loan                                      bool
	issueDate, expDate                        string
	rate                                      float64
	commitAmt                                 int64 // savings: monthly commitment
	openBalance                               int64
	nTrans, spanDays                          int
	// rows memoises long transaction lists (see memoRows).
	rows memo[depositTx]
	// loans only
	principal    int64
	repayDate    string // next repayment date, YYYYMMDD
	repayMethod  string
	repayAccount string
}

var depositProducts = map[string][]string{
	"1001": {"테스트 자유입출금통장", "모의 급여통장", "한빛 생활통장"},
	"1002": {"테스트 정기예금", "모의 회전예금"},
	"1003": {"테스트 정기적금", "한빛 자유적금"},
}

var loanProducts = map[string][]string{
	"3100": {"테스트 직장인신용대출", "모의 비상금대출"},
	"3200": {"테스트 주택담보대출"},
}

func (s *Simulator) genBank(c *customer, oi int, r *rng) []*bankAccount {
	o := &s.orgs[oi]
	seen := map[string]bool{}
	newNum := func() string {
		for {
			n := o.acctPrefix + r.digits(14-len(o.acctPrefix))
			if !seen[n] {
				seen[n] = true
				return n
			}
		}
	}
	big := c.idx == BigCustomer && o.Code == BigDepositOrg
	var accts []*bankAccount
	for k, n := 0, r.between(1, 3); k < n; k++ {
		typ := []string{"1001", "1001", "1002", "1003"}[r.intn(4)]
		if k == 0 {
			typ = "1001" // everyone has a demand deposit to page through
		}
		a := &bankAccount{
			num: newNum(), seqno: "1", accountType: typ, status: "01",
			prodName:  r.pick(depositProducts[typ]),
			issueDate: s.daysAgo(r.between(400, 3650)),
			nTrans:    r.between(20, 150), spanDays: 365,
			openBalance: r.amount(100_000, 5_000_000, 1000),
		}
		switch typ {
		case "1001":
			a.rate = 0.1
		case "1002":
			a.rate = float64(r.between(250, 420)) / 100
			a.expDate = s.anchor.AddDate(0, r.between(1, 24), 0).Format(dateLayout)
			a.nTrans = r.between(1, 3)
		case "1003":
			a.rate = float64(r.between(300, 550)) / 100
			a.expDate = s.anchor.AddDate(0, r.between(1, 24), 0).Format(dateLayout)
			a.commitAmt = r.amount(100_000, 1_000_000, 10_000)
			a.openBalance = 0
			a.nTrans = r.between(3, 24)
		}
		if big && k == 0 {
			a.nTrans, a.spanDays = BigDepositTransactions, 3*365
		}
		accts = append(accts, a)
	}
	if r.chance(40) {
		typ := []string{"3100", "3100", "3200"}[r.intn(3)]
		a := &bankAccount{
			num: newNum(), seqno: "1", accountType: typ, status: "01", loan: true,
			prodName:     r.pick(loanProducts[typ]),
			issueDate:    s.daysAgo(r.between(100, 2000)),
			expDate:      s.anchor.AddDate(r.between(1, 10), 0, 0).Format(dateLayout),
			rate:         float64(r.between(350, 890)) / 100,
			principal:    r.amount(5_000_000, 300_000_000, 1_000_000),
			repayDate:    s.anchor.AddDate(0, 0, r.between(1, 30)).Format(dateLayout),
			repayMethod:  []string{"01", "02", "03"}[r.intn(3)],
			repayAccount: accts[0].num,
		}
		accts = append(accts, a)
	}
	return accts
}

// depositTx is one row of BA04 (SPEC §3.2, §7.3).
type depositTx struct {
	TransDtime   string `json:"trans_dtime"`
	TransNo      string `json:"trans_no"`
	TransType    string `json:"trans_type"`
	TransClass   string `json:"trans_class"`
	CurrencyCode string `json:"currency_code"`
	TransAmt     int64  `json:"trans_amt"`
	BalanceAmt   int64  `json:"balance_amt"`
	PaidInCnt    int    `json:"paid_in_cnt,omitempty"`
	TransMemo    string `json:"trans_memo"`
}

// txTimes returns n sorted times within the span days before the data day.
func (s *Simulator) txTimes(r *rng, n, spanDays int) []time.Time {
	secs := make([]int64, n)
	span := int64(spanDays) * 86400
	for i := range secs {
		secs[i] = int64(r.u64() % uint64(span))
	}
	slices.Sort(secs)
	start := s.anchor.Add(-time.Duration(span) * time.Second)
	out := make([]time.Time, n)
	for i, v := range secs {
		out[i] = start.Add(time.Duration(v) * time.Second)
	}
	return out
}

// memoRows is the row count from which a generated list is kept rather
// than regenerated per request. Only the documented big lists reach it, so
// memory stays flat while benchmarks paging them stay cheap.
const memoRows = 500

// memo holds one generated list. Callers share the slice and must not
// modify it.
type memo[T any] struct {
	once sync.Once
	rows []T
}

func (m *memo[T]) get(n int, gen func() []T) []T {
	if n < memoRows {
		return gen()
	}
	m.once.Do(func() { m.rows = gen() })
	return m.rows
}

// depositTxs returns account ai's transactions, newest first (as providers
// return them), with a running balance that never goes negative.
func (s *Simulator) depositTxs(c *customer, oi, ai int) []depositTx {
	a := c.assets[oi].bank[ai]
	return a.rows.get(a.nTrans, func() []depositTx { return s.genDepositTxs(c, a, oi, ai) })
}

func (s *Simulator) genDepositTxs(c *customer, a *bankAccount, oi, ai int) []depositTx {
	r := newRNG(s.seed, tagDepositTx, uint64(c.idx), uint64(oi), uint64(ai))
	times := s.txTimes(r, a.nTrans, a.spanDays)
	out := make([]depositTx, len(times))
	bal := a.openBalance
	for i, t := range times {
		tx := depositTx{TransDtime: t.Format(dtimeLayout), TransNo: fmt.Sprintf("%06d", i+1), CurrencyCode: "KRW"}
		in := true
		switch {
		case a.accountType == "1003":
			tx.TransClass, tx.TransAmt, tx.PaidInCnt, tx.TransMemo = "적금납입", a.commitAmt, i+1, c.name
		case a.accountType == "1002":
			tx.TransClass, tx.TransAmt, tx.TransMemo = "예금입금", r.amount(1_000_000, 50_000_000, 100_000), c.name
		default:
			switch k := r.intn(100); {
			case k < 35:
				in = false
				m := s.merchants[r.intn(len(s.merchants))]
				tx.TransClass, tx.TransAmt, tx.TransMemo = "체크카드", r.amount(1_500, 150_000, 100), m.name
			case k < 57:
				tx.TransClass, tx.TransAmt, tx.TransMemo = "이체입금", r.amount(10_000, 300_000, 1_000), koreanName(r)
			case k < 76:
				in = false
				tx.TransClass, tx.TransAmt, tx.TransMemo = "이체출금", r.amount(10_000, 1_500_000, 1_000), koreanName(r)
			case k < 88:
				in = false
				tx.TransClass, tx.TransAmt, tx.TransMemo = "자동이체", r.amount(20_000, 300_000, 10), r.pick(billMemos)
			case k < 96:
				in = false
				tx.TransClass, tx.TransAmt, tx.TransMemo = "현금인출", r.amount(10_000, 500_000, 10_000), "ATM출금 "+r.pick(merchantBranches)
			default: // about one row in 25: monthly pay for an account used daily
				tx.TransClass, tx.TransAmt, tx.TransMemo = "급여", r.amount(2_500_000, 6_500_000, 1_000), r.pick(companies)+" 급여"
			}
			if !in && tx.TransAmt > bal {
				// Never overdraw: the customer was paid instead.
				in = true
				tx.TransClass, tx.TransAmt, tx.TransMemo = "이체입금", tx.TransAmt+r.amount(10_000, 500_000, 1_000), koreanName(r)
			}
		}
		if in {
			tx.TransType = "01"
			bal += tx.TransAmt
		} else {
			tx.TransType = "02"
			bal -= tx.TransAmt
		}
		tx.BalanceAmt = bal
		out[len(times)-1-i] = tx
	}
	return out
}

// balanceOf is the account's current balance: that after its last row.
func (s *Simulator) balanceOf(c *customer, oi, ai int) int64 {
	if txs := s.depositTxs(c, oi, ai); len(txs) > 0 {
		return txs[0].BalanceAmt
	}
	return c.assets[oi].bank[ai].openBalance
}

// --- card ---

type card struct {
	id, num, name, cardType, brand, issueDate, linkedBank, account string
	annualFee                                                      int64
	nApprovals, spanDays                                           int
	rows                                                           memo[approval]
}

var cardNames = []string{"테스트 체크카드", "모의 포인트카드", "한빛 플래티넘", "가온 트래블카드", "누리 알뜰카드"}

func (s *Simulator) genCards(c *customer, oi int, r *rng) []*card {
	var out []*card
	big := c.idx == BigCustomer && s.orgs[oi].Code == BigCardOrg
	for k, n := 0, r.between(1, 3); k < n; k++ {
		cd := &card{
			// card_id is the provider's opaque key, deliberately unrelated
			// to the card number.
			id:         "C" + strings.ToUpper(fmt.Sprintf("%016x", r.u64()))[:15],
			num:        []string{"4", "5", "9"}[r.intn(3)] + r.digits(15),
			name:       r.pick(cardNames),
			cardType:   []string{"01", "02"}[r.intn(2)],
			brand:      []string{"01", "02", "03"}[r.intn(3)],
			issueDate:  s.daysAgo(r.between(200, 2500)),
			linkedBank: []string{"004", "011", "020", "088"}[r.intn(4)],
			account:    r.digits(14),
			annualFee:  int64(r.between(0, 15)) * 1000,
			nApprovals: r.between(20, 150), spanDays: 365,
		}
		if big && k == 0 {
			cd.nApprovals, cd.spanDays = BigCardApprovals, 3*365
		}
		out = append(out, cd)
	}
	return out
}

// maskCard shows the first six and last four digits, as providers do.
func maskCard(n string) string { return n[:6] + strings.Repeat("*", len(n)-10) + n[len(n)-4:] }

// approval is one row of CD03 (SPEC §3.3, §7.4).
type approval struct {
	ApprovedNum     string `json:"approved_num"`
	Status          string `json:"status"`
	PayType         string `json:"pay_type"`
	ApprovedDtime   string `json:"approved_dtime"`
	CancelDtime     string `json:"cancel_dtime,omitempty"`
	MerchantName    string `json:"merchant_name"`
	MerchantRegno   string `json:"merchant_regno"`
	ApprovedAmt     int64  `json:"approved_amt"`
	TotalInstallCnt int    `json:"total_install_cnt"`
}

// approvals returns card ci's domestic approvals, newest first.
func (s *Simulator) approvals(c *customer, oi, ci int) []approval {
	cd := c.assets[oi].cards[ci]
	return cd.rows.get(cd.nApprovals, func() []approval { return s.genApprovals(c, cd, oi, ci) })
}

func (s *Simulator) genApprovals(c *customer, cd *card, oi, ci int) []approval {
	r := newRNG(s.seed, tagApprovals, uint64(c.idx), uint64(oi), uint64(ci))
	times := s.txTimes(r, cd.nApprovals, cd.spanDays)
	out := make([]approval, len(times))
	for i, t := range times {
		m := s.merchants[r.intn(len(s.merchants))]
		a := approval{
			ApprovedNum: r.digits(8), Status: "01", PayType: "01",
			ApprovedDtime: t.Format(dtimeLayout), MerchantName: m.name, MerchantRegno: m.regno,
			ApprovedAmt: r.amount(1_000, 300_000, 10),
		}
		if r.chance(15) {
			a.PayType, a.TotalInstallCnt = "02", r.between(2, 12)
		}
		if r.chance(7) {
			a.Status = "02"
			a.CancelDtime = t.Add(time.Duration(r.between(60, 86400)) * time.Second).Format(dtimeLayout)
			if a.CancelDtime >= s.anchor.Format(dtimeLayout) {
				a.CancelDtime = a.ApprovedDtime
			}
		}
		out[len(times)-1-i] = a
	}
	return out
}

// cardBill is one row of CD21.
type cardBill struct {
	Seqno       string `json:"seqno"`
	ChargeAmt   int64  `json:"charge_amt"`
	ChargeDay   string `json:"charge_day"`
	ChargeMonth string `json:"charge_month"`
	PaidOutDate string `json:"paid_out_date"`
	CardType    string `json:"card_type"`
}

// bills generates the 24 monthly bills before the data day's month, newest
// first.
func (s *Simulator) bills(c *customer, oi int) []cardBill {
	r := newRNG(s.seed, tagBills, uint64(c.idx), uint64(oi))
	day := r.between(1, 27)
	first := time.Date(s.anchor.Year(), s.anchor.Month(), 1, 0, 0, 0, 0, kst)
	var out []cardBill
	for k := 1; k <= 24; k++ {
		m := first.AddDate(0, -k, 0)
		out = append(out, cardBill{
			Seqno:       fmt.Sprintf("%d", k),
			ChargeAmt:   r.amount(50_000, 2_500_000, 10),
			ChargeDay:   fmt.Sprintf("%02d", day),
			ChargeMonth: m.Format(monthLayout),
			PaidOutDate: m.AddDate(0, 0, day-1).Format(dateLayout),
			CardType:    []string{"01", "02"}[r.intn(2)],
		})
	}
	return out
}

// --- invest ---

type investAccount struct {
	num, name, accountType, status string
	cash                           int64
	nTrans                         int
}

var stocks = []struct {
	name, code string
	price      int64
}{
	{"테스트전자", "900010", 71_000}, {"모의화학", "900020", 412_000}, {"한빛바이오", "900030", 35_500},
	{"가상자동차", "900040", 198_000}, {"샘플금융지주", "900050", 56_300}, {"누리소프트", "900060", 12_450},
	{"가온건설", "900070", 8_800}, {"별빛엔터", "900080", 27_650},
}

// investTx is one row of the invest transaction list (SPEC §3.4).
type investTx struct {
	ProdName        string `json:"prod_name"`
	ProdCode        string `json:"prod_code"`
	TransDtime      string `json:"trans_dtime"`
	TransType       string `json:"trans_type"`
	TransTypeDetail string `json:"trans_type_detail"`
	TransNum        int64  `json:"trans_num"`
	BaseAmt         int64  `json:"base_amt"`
	TransAmt        int64  `json:"trans_amt"`
	SettleAmt       int64  `json:"settle_amt"`
	BalanceAmt      int64  `json:"balance_amt"`
	CurrencyCode    string `json:"currency_code"`
}

func (s *Simulator) investTxs(c *customer, oi, ai int) []investTx {
	a := c.assets[oi].invest[ai]
	r := newRNG(s.seed, tagInvestTx, uint64(c.idx), uint64(oi), uint64(ai))
	times := s.txTimes(r, a.nTrans, 365)
	out := make([]investTx, len(times))
	cash := a.cash
	for i, t := range times {
		st := stocks[r.intn(len(stocks))]
		price := st.price * int64(r.between(80, 120)) / 100
		n := int64(r.between(1, 30))
		tx := investTx{ProdName: st.name, ProdCode: st.code, TransDtime: t.Format(dtimeLayout), TransNum: n, BaseAmt: price, TransAmt: price * n, CurrencyCode: "KRW"}
		fee := tx.TransAmt * 15 / 10000
		switch {
		case cash < tx.TransAmt+fee || r.chance(15):
			dep := r.amount(500_000, 5_000_000, 10_000)
			tx = investTx{ProdName: "예수금", ProdCode: "000000", TransDtime: tx.TransDtime, TransType: "101", TransTypeDetail: "입금", TransAmt: dep, SettleAmt: dep, CurrencyCode: "KRW"}
			cash += dep
		case r.chance(60):
			tx.TransType, tx.TransTypeDetail, tx.SettleAmt = "301", "매수", tx.TransAmt+fee
			cash -= tx.SettleAmt
		default:
			tx.TransType, tx.TransTypeDetail, tx.SettleAmt = "302", "매도", tx.TransAmt-fee
			cash += tx.SettleAmt
		}
		tx.BalanceAmt = cash
		out[len(times)-1-i] = tx
	}
	return out
}

// --- insu ---

type policy struct {
	num, prodName, insuType, status, issueDate, expDate string
	faceAmt                                             int64
	renewable, variable, universal, loanable, pension   bool
	insured                                             []string
}

var insuProducts = []struct {
	name, typ string
	pension   bool
}{
	{"무배당 테스트종신보험", "01", false}, {"모의실손의료비보험", "02", false}, {"한빛암보험(갱신형)", "02", false},
	{"가상연금저축보험", "03", true}, {"누리운전자보험", "04", false},
}

// --- efin ---

type efinProfile struct {
	accounts []*efinAccount
}

type efinAccount struct {
	subKey, accountID, status string
	pays                      []efinPay
	nTrans                    int
}

type efinPay struct {
	PayOrgCode string `json:"pay_org_code"`
	PayID      string `json:"pay_id"`
	IsPrimary  bool   `json:"is_primary"`
}

// efinTx is one row of EF05 (SPEC §3.6).
type efinTx struct {
	TransType       string `json:"trans_type"`
	FobName         string `json:"fob_name"`
	TransNum        string `json:"trans_num"`
	TransDtime      string `json:"trans_dtime"`
	TransAmt        int64  `json:"trans_amt"`
	TransOrgCode    string `json:"trans_org_code"`
	TransID         string `json:"trans_id"`
	TotalInstallCnt int    `json:"total_install_cnt"`
	MerchantName    string `json:"merchant_name"`
	TransTitle      string `json:"trans_title"`
	TransCategory   string `json:"trans_category"`
	PayMethod       string `json:"pay_method"`
}

func (s *Simulator) efinTxs(c *customer, oi, ai int) []efinTx {
	a := c.assets[oi].efin.accounts[ai]
	r := newRNG(s.seed, tagEfinTx, uint64(c.idx), uint64(oi), uint64(ai))
	times := s.txTimes(r, a.nTrans, 365)
	out := make([]efinTx, len(times))
	for i, t := range times {
		p := a.pays[r.intn(len(a.pays))]
		tx := efinTx{
			TransType: "01", FobName: "테스트페이머니", TransNum: r.digits(12), TransDtime: t.Format(dtimeLayout),
			TransAmt: r.amount(1_000, 250_000, 10), TransOrgCode: p.PayOrgCode, TransID: p.PayID,
			MerchantName: r.pick(shops), TransTitle: r.pick(shopItems), TransCategory: []string{"01", "02", "03", "04"}[r.intn(4)],
			PayMethod: []string{"01", "02"}[r.intn(2)],
		}
		if r.chance(10) {
			tx.TransType = "02" // refund
		}
		out[len(times)-1-i] = tx
	}
	return out
}

// --- telecom ---

type telecomLine struct {
	MgmtID     string `json:"mgmt_id"`
	IsConsent  bool   `json:"is_consent"`
	TelecomNum string `json:"telecom_num"`
	Type       string `json:"type"`
	Status     string `json:"status"`
}

// genAssets builds customer c's holdings at org oi. Its stream depends only
// on (seed, customer, org), so institutions are independent of each other.
func (s *Simulator) genAssets(c *customer, oi int) *orgAssets {
	r := newRNG(s.seed, tagAssets, uint64(c.idx), uint64(oi))
	a := &orgAssets{regDate: s.daysAgo(r.between(400, 3650))}
	switch s.orgs[oi].Industry {
	case "bank":
		a.bank = s.genBank(c, oi, r)
	case "card":
		a.cards = s.genCards(c, oi, r)
	case "invest":
		for k, n := 0, r.between(1, 2); k < n; k++ {
			a.invest = append(a.invest, &investAccount{
				num:         s.orgs[oi].acctPrefix + r.digits(11),
				name:        []string{"종합매매계좌", "CMA계좌", "연금저축계좌"}[k%3],
				accountType: []string{"101", "102", "201"}[k%3],
				status:      "201",
				cash:        r.amount(0, 3_000_000, 1_000),
				nTrans:      r.between(10, 60),
			})
		}
	case "insu":
		for k, n := 0, r.between(1, 3); k < n; k++ {
			p := insuProducts[r.intn(len(insuProducts))]
			pol := &policy{
				num: r.digits(13), prodName: p.name, insuType: p.typ, status: "02",
				issueDate: s.daysAgo(r.between(300, 5000)),
				expDate:   s.anchor.AddDate(r.between(5, 40), 0, 0).Format(dateLayout),
				faceAmt:   r.amount(10_000_000, 300_000_000, 1_000_000),
				renewable: strings.Contains(p.name, "갱신"), variable: r.chance(20), universal: r.chance(30),
				loanable: r.chance(50), pension: p.pension,
				insured: []string{c.name},
			}
			if r.chance(35) {
				pol.insured = append(pol.insured, c.family)
			}
			a.policies = append(a.policies, pol)
		}
	case "efin":
		ef := &efinProfile{}
		for k, n := 0, r.between(1, 2); k < n; k++ {
			acc := &efinAccount{
				subKey:    fmt.Sprintf("%016x%016x", r.u64(), r.u64()),
				accountID: fmt.Sprintf("%s%04d", r.pick(handles), r.intn(10000)),
				status:    "01",
				nTrans:    r.between(10, 80),
			}
			for p, np := 0, r.between(1, 2); p < np; p++ {
				acc.pays = append(acc.pays, efinPay{
					PayOrgCode: []string{"TESTCD0001", "TESTBK0001"}[p%2],
					PayID:      r.digits(3) + "******" + r.digits(1),
					IsPrimary:  p == 0,
				})
			}
			ef.accounts = append(ef.accounts, acc)
		}
		a.efin = ef
	case "telecom":
		a.lines = append(a.lines, telecomLine{MgmtID: "TC" + r.digits(10), IsConsent: true, TelecomNum: c.phone, Type: "01", Status: "01"})
		if r.chance(50) {
			a.lines = append(a.lines, telecomLine{MgmtID: "TC" + r.digits(10), IsConsent: true, TelecomNum: fmt.Sprintf("070-%d-%s", r.between(2000, 9999), r.digits(4)), Type: "03", Status: "01"})
		}
	}
	return a
}

// --- support-API registrations ---

// operator is a MyData operator (or CA) registered at the portal with its
// services and their credentials, for /mgmts/services and
// /mgmts/ca_credentials.
type operator struct {
	orgCode  string
	services []service
}

type service struct {
	name, clientID, clientSecret, redirectURI string
	ips                                       []string
}

func (s *Simulator) genOperators() (ops, cas []operator) {
	r := newRNG(s.seed, tagOperators)
	newSvc := func(org string, k int, name string) service {
		return service{
			name:         name,
			clientID:     fmt.Sprintf("%sCLIENT%02d", org, k),
			clientSecret: r.alnum(40),
			redirectURI:  fmt.Sprintf("https://%s.operator.example/oauth/callback/%d", strings.ToLower(org), k),
			ips:          []string{fmt.Sprintf("192.0.2.%d", r.between(1, 254)), fmt.Sprintf("198.51.100.%d", r.between(1, 254))},
		}
	}
	ops = []operator{
		{orgCode: "TESTMD0001", services: []service{newSvc("TESTMD0001", 1, "테스트마이데이터"), newSvc("TESTMD0001", 2, "테스트자산관리")}},
		{orgCode: "TESTMD0002", services: []service{newSvc("TESTMD0002", 1, "모의가계부")}},
	}
	cas = []operator{
		{orgCode: "TESTCA0001", services: []service{newSvc("TESTCA0001", 1, "테스트인증")}},
	}
	return ops, cas
}
