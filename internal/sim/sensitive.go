package sim

import (
	"slices"
	"strings"
)

// SensitiveValues returns, sorted and without duplicates, every plaintext
// sensitive value the simulator can emit for the given customers (all
// customers when none are given): names, CIs, phone numbers (as sent, bare
// digits and +82 form), account, card, policy, sub_key, mgmt_id and other
// asset identifiers, trans_memo texts, merchant names and registration
// numbers, purchase titles; plus the portal's client secrets and every
// secret issued so far (IssuedSecrets). Leak checks scan archives for these.
//
// Out-of-range indexes are ignored. The list is a pure function of the
// seed and the data day except for the issued secrets. Calling it for all
// customers regenerates every transaction list once: well under a second
// for the default 1000 customers.
func (s *Simulator) SensitiveValues(customers ...int) []string {
	if len(customers) == 0 {
		customers = make([]int, s.nCust)
		for i := range customers {
			customers[i] = i
		}
	}
	set := map[string]struct{}{}
	add := func(vs ...string) {
		for _, v := range vs {
			if v != "" {
				set[v] = struct{}{}
			}
		}
	}
	for _, i := range customers {
		if i < 0 || i >= s.nCust {
			continue
		}
		s.customerSensitive(s.customer(i), add)
	}
	for _, ops := range [][]operator{s.operators, s.caCreds} {
		for _, op := range ops {
			for _, sv := range op.services {
				add(sv.clientSecret)
			}
		}
	}
	add(s.IssuedSecrets()...)
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func (s *Simulator) customerSensitive(c *customer, add func(...string)) {
	add(c.name, c.family, c.ci, c.phone, strings.ReplaceAll(c.phone, "-", ""), intlPhone(c.phone))
	for oi, a := range c.assets {
		for ai, acc := range a.bank {
			add(acc.num, acc.repayAccount)
			if acc.loan {
				continue
			}
			for _, tx := range s.depositTxs(c, oi, ai) {
				add(tx.TransMemo)
			}
		}
		for ci, cd := range a.cards {
			add(cd.id, maskCard(cd.num), cd.num, cd.account)
			for _, ap := range s.approvals(c, oi, ci) {
				add(ap.MerchantName, ap.MerchantRegno)
			}
		}
		for _, acc := range a.invest {
			add(acc.num)
		}
		for _, pl := range a.policies {
			add(pl.num)
			add(pl.insured...)
		}
		if a.efin != nil {
			for ai, acc := range a.efin.accounts {
				add(acc.subKey, acc.accountID)
				for _, p := range acc.pays {
					add(p.PayID)
				}
				for _, tx := range s.efinTxs(c, oi, ai) {
					add(tx.MerchantName, tx.TransTitle, tx.TransID)
				}
			}
		}
		for _, l := range a.lines {
			add(l.MgmtID, l.TelecomNum, strings.ReplaceAll(l.TelecomNum, "-", ""))
		}
	}
}
