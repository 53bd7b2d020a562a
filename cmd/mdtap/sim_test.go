package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The issue's acceptance, as a user runs it: `mdtap sim --listen … --ca-out
// ca.pem`, a token from /oauth/2.0/token, then the account list.
func TestSimCommandServes(t *testing.T) {
	addr := freePort(t)
	caPath := filepath.Join(t.TempDir(), "ca.pem")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"sim", "--listen", addr, "--ca-out", caPath}, strings.NewReader(""), io.Discard, &stderr,
			func(string) (string, bool) { return "", false })
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("mdtap sim exited %d: %s", code, stderr.String())
		}
	})

	var pool *x509.CertPool
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pem, err := os.ReadFile(caPath); err == nil && len(pem) > 0 {
			pool = x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool}); err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("simulator did not come up: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := "https://" + addr
	resp, err := client.Get(base + "/oauth/2.0/authorize?org_code=TESTBK0001&response_type=code&client_id=demo&redirect_uri=https://operator.example/cb&state=s1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "s1" {
		t.Fatalf("authorize: status %d, location with code and state expected", resp.StatusCode)
	}
	resp, err = client.PostForm(base+"/oauth/2.0/token", url.Values{
		"org_code": {"TESTBK0001"}, "grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"client_id": {"demo"}, "client_secret": {"demo"}, "redirect_uri": {"https://operator.example/cb"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" || tok.TokenType != "Bearer" {
		t.Fatalf("token: %+v", tok)
	}
	req, _ := http.NewRequest("GET", base+"/v1/bank/accounts?org_code=TESTBK0001&search_timestamp=0&limit=500", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("x-api-tran-id", "TESTMD0001M00000000000001")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		RspCode     string `json:"rsp_code"`
		AccountCnt  int    `json:"account_cnt"`
		AccountList []struct {
			AccountNum string `json:"account_num"`
			Seqno      string `json:"seqno"`
		} `json:"account_list"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || list.RspCode != "00000" || list.AccountCnt == 0 || len(list.AccountList) != list.AccountCnt ||
		list.AccountList[0].AccountNum == "" || resp.Header.Get("x-api-tran-id") != "TESTMD0001M00000000000001" {
		t.Fatalf("account list: status %d rsp_code %s count %d", resp.StatusCode, list.RspCode, list.AccountCnt)
	}
}
