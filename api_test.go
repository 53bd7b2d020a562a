package mdtap_test

import (
	"maps"
	"testing"

	"github.com/mdtap/mdtap"
)

func TestMatchAPI(t *testing.T) {
	cases := []struct {
		path   string
		sector mdtap.Sector
		api    string
		params map[string]string
	}{
		{"/v1/bank/accounts", mdtap.SectorBank, "/v1/bank/accounts", nil},
		{"/v2/bank/accounts/deposit/transactions", mdtap.SectorBank, "/v2/bank/accounts/deposit/transactions", nil},
		{"/bank/accounts", mdtap.SectorBank, "/bank/accounts", nil},
		{"/v1/bank/accounts/", mdtap.SectorBank, "/v1/bank/accounts", nil},
		{"/v1/card/cards/C123/approval-domestic", mdtap.SectorCard, "/v1/card/cards/{card_id}/approval-domestic", map[string]string{"card_id": "C123"}},
		{"/v1/card/cards/C123", mdtap.SectorCard, "/v1/card/cards/{card_id}", map[string]string{"card_id": "C123"}},
		{"/v1/card/cards/bills", mdtap.SectorCard, "/v1/card/cards/bills", nil},
		{"/v1/card/cards/point", mdtap.SectorCard, "/v1/card/cards/point", nil},
		{"/v1/card/cards", mdtap.SectorCard, "/v1/card/cards", nil},
		{"/v1/invest/irps/basic", mdtap.SectorInvest, "/v1/invest/irps/basic", nil},
		{"/v1/insu/insurances/car/transactions", mdtap.SectorInsu, "/v1/insu/insurances/car/transactions", nil},
		{"/v1/efin/accounts/transactions", mdtap.SectorEfin, "/v1/efin/accounts/transactions", nil},
		{"/v1/telecom/telecoms", mdtap.SectorTelecom, "/v1/telecom/telecoms", nil},
		{"/v1/capital/loans/oplease/basic", mdtap.SectorCapital, "/v1/capital/loans/oplease/basic", nil},
		{"/v1/p2p/consents", mdtap.SectorP2P, "/v1/p2p/consents", nil},
		{"/v1/gov/apis", mdtap.SectorGov, "/v1/gov/apis", nil},
		{"/oauth/2.0/token", mdtap.SectorAuth, "/oauth/2.0/token", nil},
		{"/v2/oauth/2.0/authorize", mdtap.SectorAuth, "/v2/oauth/2.0/authorize", nil},
		{"/ca/sign_request", mdtap.SectorCA, "/ca/sign_request", nil},
		{"/mgmts/services", mdtap.SectorMgmts, "/mgmts/services", nil},
		{"/v2/mgmts/oauth/2.0/token", mdtap.SectorMgmts, "/v2/mgmts/oauth/2.0/token", nil},
		{"/support/oauth/2.0/token", mdtap.SectorMgmts, "/support/oauth/2.0/token", nil},
		// Known sector, unknown resource: the sector is a vocabulary word, the path is not.
		{"/v1/bank/accounts/99900012345678", mdtap.SectorBank, mdtap.APIUnknown, nil},
		{"/v1/card/cards//approval-domestic", mdtap.SectorCard, mdtap.APIUnknown, nil},
		{"/v1/shop/orders", mdtap.SectorUnknown, mdtap.APIUnknown, nil},
		{"/", mdtap.SectorUnknown, mdtap.APIUnknown, nil},
		{"", mdtap.SectorUnknown, mdtap.APIUnknown, nil},
		{"/v1", mdtap.SectorUnknown, mdtap.APIUnknown, nil},
		{"/auth/x", mdtap.SectorUnknown, mdtap.APIUnknown, nil},
		{"/unknown/apis", mdtap.SectorUnknown, mdtap.APIUnknown, nil},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			m := mdtap.MatchAPI(tc.path)
			if m.Sector != tc.sector || m.API != tc.api || !maps.Equal(m.Params, tc.params) {
				t.Fatalf("MatchAPI(%q) = %+v, want sector %s api %s params %v", tc.path, m, tc.sector, tc.api, tc.params)
			}
		})
	}
}

func TestSectorVocabulary(t *testing.T) {
	for _, s := range mdtap.Sectors {
		if !s.Valid() {
			t.Errorf("%s.Valid() = false", s)
		}
	}
	if mdtap.Sector("shop").Valid() || mdtap.Sector("").Valid() {
		t.Error("Valid() accepts a word outside the vocabulary")
	}
	for s, want := range map[mdtap.Sector]bool{"bank": true, "gov": true, "auth": false, "ca": false, "mgmts": false, "unknown": false} {
		if got := s.Industry(); got != want {
			t.Errorf("%s.Industry() = %v, want %v", s, got, want)
		}
	}
}

func TestRecordSubject(t *testing.T) {
	cases := []struct {
		sector mdtap.Sector
		org    string
		want   string
	}{
		{mdtap.SectorBank, "TESTBK0001", "mdtap.records.bank.TESTBK0001"},
		{mdtap.SectorAuth, "", "mdtap.records.auth._"},
		{mdtap.SectorCard, "A.B*>C", "mdtap.records.card.A_B__C"},
		{mdtap.SectorCard, "은행-1", "mdtap.records.card.__-1"},
		{mdtap.SectorCard, "a b\tc", "mdtap.records.card.a_b_c"},
		{"", "X", "mdtap.records.unknown.X"},
		{"bad.sector", "X", "mdtap.records.unknown.X"},
	}
	for _, tc := range cases {
		if got := mdtap.RecordSubject(tc.sector, tc.org); got != tc.want {
			t.Errorf("RecordSubject(%q, %q) = %q, want %q", tc.sector, tc.org, got, tc.want)
		}
	}
}
