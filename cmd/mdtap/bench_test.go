package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A short bench proxy run end to end: the simulator, JetStream, the relay
// and mdtap children, all three targets measured, and records in the stream.
func TestBenchProxySmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns proxies and loads them for several seconds")
	}
	var stdout, stderr syncBuffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		lookupEnv: func(string) (string, bool) { return "", false }}
	cmd := newBenchCmd(a)
	cmd.SetArgs([]string{"proxy", "--duration", "1s", "--warmup", "200ms", "--concurrency", "4", "--json"})
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("bench proxy: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		t.Fatalf("decode report: %v\n%s", err, stdout.String())
	}
	var names []string
	for _, tr := range rep.Targets {
		names = append(names, tr.Name)
		if tr.Saturation.RPS <= 0 {
			t.Errorf("%s: saturation rps %g, want > 0", tr.Name, tr.Saturation.RPS)
		}
		if tr.Saturation.Errors != 0 {
			t.Errorf("%s: %d errors (%s)", tr.Name, tr.Saturation.Errors, tr.Saturation.FirstError)
		}
		if tr.Name != targetDirect && (tr.HalfRate == nil || tr.HalfRate.RPS <= 0 || tr.RSSMiB <= 0) {
			t.Errorf("%s: half rate %+v, RSS %g MiB: want both measured", tr.Name, tr.HalfRate, tr.RSSMiB)
		}
	}
	if got, want := strings.Join(names, ","), "direct,relay,mdtap"; got != want {
		t.Errorf("targets %s, want %s", got, want)
	}
	if rep.Capture.Records == 0 || rep.Capture.Records < uint64(rep.Capture.Exchanges) {
		t.Errorf("records in stream: %d of %d exchanges", rep.Capture.Records, rep.Capture.Exchanges)
	}
	if rep.Ratios.MdtapVsRelay <= 0 || rep.HalfRateRPS <= 0 {
		t.Errorf("ratios %+v, half rate %g: want measured", rep.Ratios, rep.HalfRateRPS)
	}
}

func TestBenchProxyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"proxy", "--api", "nope"},
		{"proxy", "--concurrency", "0"},
		{"proxy", "--duration", "0s"},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			var out syncBuffer
			a := &app{stdin: strings.NewReader(""), stdout: &out, stderr: &out,
				lookupEnv: func(string) (string, bool) { return "", false }}
			cmd := newBenchCmd(a)
			cmd.SetArgs(args)
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			err := cmd.Execute()
			if _, ok := err.(*usageError); !ok {
				t.Errorf("bench %v: got %v, want a usage error", args, err)
			}
		})
	}
}
