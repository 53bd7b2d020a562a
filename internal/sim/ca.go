package sim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// signRequestBody is IA102's request (SPEC §2.2).
type signRequestBody struct {
	SignTxID           flexString    `json:"sign_tx_id"`
	UserCI             flexString    `json:"user_ci"`
	RealName           flexString    `json:"real_name"`
	PhoneNum           flexString    `json:"phone_num"`
	RequestTitle       flexString    `json:"request_title"`
	DeviceCode         flexString    `json:"device_code"`
	DeviceBrowser      flexString    `json:"device_browser"`
	ReturnAppSchemeURL flexString    `json:"return_app_scheme_url"`
	ConsentType        flexString    `json:"consent_type"`
	ConsentCnt         flexString    `json:"consent_cnt"`
	ConsentList        []consentItem `json:"consent_list"`
}

type consentItem struct {
	TxID         flexString `json:"tx_id"`
	ConsentTitle flexString `json:"consent_title"`
	// Consent is the transmission-request object (SPEC §2.3), sent as a JSON
	// object or as a string; the simulator only carries it.
	Consent    json.RawMessage `json:"consent"`
	ConsentLen flexString      `json:"consent_len"`
}

// signRequestResponse answers IA102. The names of the fields that launch
// the signing app are unverified (SPEC §2.2); NH keeps a sign_app_scheme.
type signRequestResponse struct {
	rsp
	CertTxID      string `json:"cert_tx_id"`
	SignAppScheme string `json:"sign_app_scheme"`
}

// signRequest is IA102. The simulated user signs at once, so the first
// sign_result already has the signatures.
func (s *Simulator) signRequest(r *http.Request, _ *call) (any, error) {
	var b signRequestBody
	if err := decodeBody(r, &b); err != nil {
		return nil, err
	}
	if err := required("sign_tx_id", b.SignTxID.String(), "user_ci", b.UserCI.String()); err != nil {
		return nil, err
	}
	if len(b.ConsentList) == 0 {
		return nil, errf(codeBadParam, "consent_list required")
	}
	if b.ConsentCnt != "" {
		if n, err := strconv.Atoi(b.ConsentCnt.String()); err != nil || n != len(b.ConsentList) {
			return nil, errf(codeBadParam, "consent_cnt does not match consent_list")
		}
	}
	if !oneOf(b.DeviceCode.String(), "", "PC", "TB", "MO") {
		return nil, errf(codeBadParam, "device_code")
	}
	if !oneOf(b.DeviceBrowser.String(), "", "WB", "NA", "HY") {
		return nil, errf(codeBadParam, "device_browser")
	}
	if utf8.RuneCountInString(b.RequestTitle.String()) > 100 {
		return nil, errf(codeBadParam, "request_title longer than 100")
	}
	ct := &certTx{signTxID: b.SignTxID.String()}
	for _, c := range b.ConsentList {
		if c.TxID == "" {
			return nil, errf(codeBadParam, "consent_list[].tx_id required")
		}
		ct.txIDs = append(ct.txIDs, c.TxID.String())
	}
	var ok bool
	if ct.customer, ok = s.customerByCI(b.UserCI.String()); !ok {
		ct.customer = s.customerFromKey(b.UserCI.String())
	}
	id := randomHex(16)
	s.auth.mu.Lock()
	s.auth.certs[id] = ct
	bounded(s.auth.certs, &s.auth.certOrder, id, maxCertTxs)
	s.auth.mu.Unlock()
	return signRequestResponse{rsp: success(), CertTxID: id, SignAppScheme: "simsign://sign?cert_tx_id=" + id}, nil
}

type signResultBody struct {
	CertTxID flexString `json:"cert_tx_id"`
	SignTxID flexString `json:"sign_tx_id"`
}

type signedConsent struct {
	TxID             string `json:"tx_id"`
	SignedConsent    string `json:"signed_consent"`
	SignedConsentLen int    `json:"signed_consent_len"`
}

// signResultResponse answers IA103. The top-level signed_consent_len is the
// number of list items (S8 uses it like the *_cnt of other lists).
type signResultResponse struct {
	rsp
	SignedConsentLen  int             `json:"signed_consent_len"`
	SignedConsentList []signedConsent `json:"signed_consent_list"`
}

// signResult is IA103. Repeated polls return the same signatures; each is
// remembered so that a password grant presenting it gets this customer.
func (s *Simulator) signResult(r *http.Request, _ *call) (any, error) {
	var b signResultBody
	if err := decodeBody(r, &b); err != nil {
		return nil, err
	}
	if err := required("cert_tx_id", b.CertTxID.String()); err != nil {
		return nil, err
	}
	s.auth.mu.Lock()
	defer s.auth.mu.Unlock()
	ct, ok := s.auth.certs[b.CertTxID.String()]
	switch {
	case !ok:
		return nil, errf(codeNotFound, "unknown cert_tx_id")
	case b.SignTxID != "" && b.SignTxID.String() != ct.signTxID:
		return nil, errf(codeBadParam, "sign_tx_id does not match cert_tx_id")
	}
	if ct.signed == nil {
		for range ct.txIDs {
			sig := fakeCMS()
			ct.signed = append(ct.signed, sig)
			s.auth.signed[sig] = ct.customer
			bounded(s.auth.signed, &s.auth.signOrder, sig, maxCertTxs)
			s.auth.record(sig)
		}
	}
	out := signResultResponse{rsp: success(), SignedConsentLen: len(ct.txIDs)}
	for i, tx := range ct.txIDs {
		out.SignedConsentList = append(out.SignedConsentList, signedConsent{TxID: tx, SignedConsent: ct.signed[i], SignedConsentLen: len(ct.signed[i])})
	}
	return out, nil
}

// fakeCMS returns base64 of a blob that starts like a DER CMS SignedData
// (SEQUENCE, OID 1.2.840.113549.1.7.2, [0]) with random content: it looks
// right to anything sniffing the prefix and is unique, so leak checks can
// find it.
func fakeCMS() string {
	content := make([]byte, 640)
	_, _ = rand.Read(content)
	oid := []byte{0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02}
	inner := append([]byte{0xA0, 0x82, byte(len(content) >> 8), byte(len(content))}, content...)
	body := append(oid, inner...)
	der := append([]byte{0x30, 0x82, byte(len(body) >> 8), byte(len(body))}, body...)
	return base64.StdEncoding.EncodeToString(der)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func oneOf(v string, set ...string) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}
