package kmstest

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	if !strings.HasPrefix(s.Endpoint(), "http://127.0.0.1:") {
		t.Errorf("Endpoint: got %q, want a loopback URL", s.Endpoint())
	}
	if got, want := s.KeyURI(), "aws-kms://arn:aws:kms:"+Region+":"+Account+":key/"+KeyID; got != want {
		t.Errorf("KeyURI: got %q, want %q", got, want)
	}
	describe := func() (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint(), strings.NewReader(`{"KeyId":"`+s.KeyARN()+`"}`))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "TrentService.DescribeKey")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := describe(); err != nil || code != http.StatusOK {
		t.Fatalf("DescribeKey of the seeded key: %d, %v", code, err)
	}
	endpoint := s.Endpoint()
	s.Stop()
	if _, err := describe(); err == nil {
		t.Error("DescribeKey with the server stopped: got nil error")
	}
	s.Restart()
	if s.Endpoint() != endpoint {
		t.Errorf("Endpoint after Restart: got %q, want %q", s.Endpoint(), endpoint)
	}
	if code, err := describe(); err != nil || code != http.StatusOK {
		t.Fatalf("DescribeKey after Restart: %d, %v", code, err)
	}
}

func TestSetenv(t *testing.T) {
	s := Start(t)
	s.Setenv(t)
	for k, want := range map[string]string{
		"AWS_ENDPOINT_URL_KMS":      s.Endpoint(),
		"AWS_REGION":                Region,
		"AWS_ACCESS_KEY_ID":         AccessKeyID,
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		if got := os.Getenv(k); got != want {
			t.Errorf("$%s: got %q, want %q", k, got, want)
		}
	}
}
