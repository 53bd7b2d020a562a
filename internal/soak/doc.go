// Package soak holds the opt-in soak test of the whole capture pipeline:
// `mdtap proxy` → NATS JetStream → `mdtap archive` → S3 (versitygw), under
// mixed MyData traffic and periodic faults, for as long as MDTAP_SOAK says
// (`MDTAP_SOAK=10m go test -v -timeout 30m ./internal/soak/`). Without
// MDTAP_SOAK the test is skipped, so `go test ./...` stays fast. See
// docs/soak.md.
package soak
