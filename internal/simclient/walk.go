package simclient

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
)

// Walk calls every API the simulator serves for one customer: the portal's
// institution and service lists; for each institution, individual
// authorisation, the sector's list and detail APIs (ids from the lists),
// both refresh variants and both revoke variants; and integrated
// authorisation through the CA at the first bank. limit is the page size of
// list calls (1–500); each list is read to its last page only for the first
// asset, to keep a walk short.
func (c *Client) Walk(ctx context.Context, customer, limit int) error {
	orgs, err := c.Orgs(ctx)
	if err != nil {
		return err
	}
	integrated := false
	for _, o := range orgs {
		access, refresh, err := c.UserToken(ctx, customer, o.Code)
		if err != nil {
			return fmt.Errorf("org %s: %w", o.Code, err)
		}
		if err := c.Sector(ctx, o, access, limit); err != nil {
			return fmt.Errorf("org %s: %w", o.Code, err)
		}
		access, refresh, err = c.Refresh(ctx, o.Code, refresh)
		if err != nil {
			return fmt.Errorf("org %s: %w", o.Code, err)
		}
		if err := c.Revoke(ctx, o.Code, access, true); err != nil {
			return fmt.Errorf("org %s: %w", o.Code, err)
		}
		if err := c.Revoke(ctx, o.Code, refresh, false); err != nil {
			return fmt.Errorf("org %s: %w", o.Code, err)
		}
		if o.Industry == "bank" && !integrated {
			integrated = true
			tok, err := c.IntegratedToken(ctx, customer, o.Code)
			if err != nil {
				return fmt.Errorf("org %s: %w", o.Code, err)
			}
			if err := c.Sector(ctx, o, tok, limit); err != nil {
				return fmt.Errorf("org %s (integrated): %w", o.Code, err)
			}
		}
	}
	return nil
}

// Sector calls the resource APIs of one institution's sector with token.
func (c *Client) Sector(ctx context.Context, o Org, token string, limit int) error {
	lim := fmt.Sprint(limit)
	listQ := url.Values{"org_code": {o.Code}, "search_timestamp": {"0"}, "limit": {lim}}
	dates := map[string]any{"from_date": "20200101", "to_date": "20991231", "limit": limit}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{"org_code": o.Code}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	switch o.Industry {
	case "bank":
		var list struct {
			Accounts []struct {
				Num         string `json:"account_num"`
				Seqno       string `json:"seqno"`
				AccountType string `json:"account_type"`
			} `json:"account_list"`
		}
		if err := c.call(ctx, "bank accounts", http.MethodGet, "/v1/bank/accounts", listQ, token, nil, &list); err != nil {
			return err
		}
		deposit, loan := false, false
		for _, a := range list.Accounts {
			isLoan := len(a.AccountType) > 0 && a.AccountType[0] == '3'
			if isLoan && !loan {
				loan = true
				if err := c.call(ctx, "bank loan basic", http.MethodPost, "/v1/bank/accounts/loan/basic", nil, token,
					with(nil, "account_num", a.Num, "seqno", a.Seqno, "search_timestamp", "0"), nil); err != nil {
					return err
				}
			}
			if !isLoan && !deposit {
				deposit = true
				body := with(nil, "account_num", a.Num, "seqno", a.Seqno, "search_timestamp", "0")
				if err := c.call(ctx, "bank deposit basic", http.MethodPost, "/v1/bank/accounts/deposit/basic", nil, token, body, nil); err != nil {
					return err
				}
				if err := c.call(ctx, "bank deposit detail", http.MethodPost, "/v1/bank/accounts/deposit/detail", nil, token, body, nil); err != nil {
					return err
				}
				if err := c.pages(ctx, "bank deposit transactions", "/v1/bank/accounts/deposit/transactions", token,
					with(dates, "account_num", a.Num, "seqno", a.Seqno)); err != nil {
					return err
				}
			}
		}
	case "card":
		var list struct {
			Cards []struct {
				ID string `json:"card_id"`
			} `json:"card_list"`
		}
		if err := c.call(ctx, "card cards", http.MethodGet, "/v1/card/cards", listQ, token, nil, &list); err != nil {
			return err
		}
		if len(list.Cards) > 0 {
			id := url.PathEscape(list.Cards[0].ID)
			if err := c.call(ctx, "card basic", http.MethodGet, "/v1/card/cards/"+id, url.Values{"org_code": {o.Code}, "search_timestamp": {"0"}}, token, nil, nil); err != nil {
				return err
			}
			q := url.Values{"org_code": {o.Code}, "from_date": {"20200101"}, "to_date": {"20991231"}, "limit": {lim}}
			if err := c.getPages(ctx, "card approval-domestic", "/v1/card/cards/"+id+"/approval-domestic", token, q); err != nil {
				return err
			}
		}
		q := url.Values{"org_code": {o.Code}, "from_month": {"202001"}, "to_month": {"209912"}, "limit": {lim}}
		if err := c.getPages(ctx, "card bills", "/v1/card/cards/bills", token, q); err != nil {
			return err
		}
	case "invest":
		var list struct {
			Accounts []struct {
				Num string `json:"account_num"`
			} `json:"account_list"`
		}
		if err := c.call(ctx, "invest accounts", http.MethodGet, "/v1/invest/accounts", listQ, token, nil, &list); err != nil {
			return err
		}
		if len(list.Accounts) > 0 {
			if err := c.pages(ctx, "invest transactions", "/v1/invest/accounts/transactions", token,
				with(dates, "account_num", list.Accounts[0].Num)); err != nil {
				return err
			}
		}
	case "insu":
		var list struct {
			Insu []struct {
				Num string `json:"insu_num"`
			} `json:"insu_list"`
		}
		if err := c.call(ctx, "insu insurances", http.MethodGet, "/v1/insu/insurances", listQ, token, nil, &list); err != nil {
			return err
		}
		if len(list.Insu) > 0 {
			if err := c.call(ctx, "insu basic", http.MethodPost, "/v1/insu/insurances/basic", nil, token,
				with(nil, "insu_num", list.Insu[0].Num, "search_timestamp", "0"), nil); err != nil {
				return err
			}
		}
	case "efin":
		var list struct {
			Accounts []struct {
				SubKey string `json:"sub_key"`
			} `json:"account_list"`
		}
		if err := c.call(ctx, "efin accounts", http.MethodGet, "/v1/efin/accounts", listQ, token, nil, &list); err != nil {
			return err
		}
		if len(list.Accounts) > 0 {
			if err := c.pages(ctx, "efin transactions", "/v1/efin/accounts/transactions", token,
				with(dates, "sub_key", list.Accounts[0].SubKey)); err != nil {
				return err
			}
		}
	case "telecom":
		if err := c.call(ctx, "telecom telecoms", http.MethodGet, "/v1/telecom/telecoms", listQ, token, nil, nil); err != nil {
			return err
		}
	default:
		return fmt.Errorf("industry %q: no calls known", o.Industry)
	}
	return nil
}

type page struct {
	NextPage string `json:"next_page"`
}

// pages follows next_page through a POST list API.
func (c *Client) pages(ctx context.Context, name, path, token string, body map[string]any) error {
	for i := 0; ; i++ {
		var p page
		if err := c.call(ctx, name, http.MethodPost, path, nil, token, body, &p); err != nil {
			return err
		}
		if p.NextPage == "" {
			return nil
		}
		if i > 10000 {
			return fmt.Errorf("%s: next_page does not terminate", name)
		}
		body["next_page"] = p.NextPage
	}
}

// getPages follows next_page through a GET list API.
func (c *Client) getPages(ctx context.Context, name, path, token string, q url.Values) error {
	for i := 0; ; i++ {
		var p page
		if err := c.call(ctx, name, http.MethodGet, path, q, token, nil, &p); err != nil {
			return err
		}
		if p.NextPage == "" {
			return nil
		}
		if i > 10000 {
			return fmt.Errorf("%s: next_page does not terminate", name)
		}
		q.Set("next_page", p.NextPage)
	}
}
