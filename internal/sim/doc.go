// Package sim is a simulated Korean MyData information provider (정보제공자).
//
// It serves, from one HTTPS listener, every simulated institution at once:
// the OAuth 2.0 endpoints of individual and integrated auth, the
// certification-authority APIs (/ca/sign_request, /ca/sign_result), the
// portal's support APIs (/mgmts/orgs, /mgmts/services, /mgmts/ca_credentials)
// and the sector resource APIs of bank, card, invest, insu, efin and telecom,
// with the paths, headers, field names, codes and formats of
// shared/mydata/SPEC.md. Resource paths answer under /v1/ and /v2/.
// It exists so that mdtap's tests, demo and benchmarks have a provider whose
// payloads are realistic, rich in secrets and personal data, and fully known
// in advance.
//
// # What it guarantees
//
//   - Data is a pure function of Options.Seed, Options.Customers and the
//     "data day" (the KST calendar day of Options.Now at New): the same inputs
//     give byte-identical payloads, across Go versions too (the generator is a
//     local splitmix64, not math/rand). Each customer is generated lazily on
//     first use; transaction lists are regenerated per request (only the two
//     big lists below are kept once built), so memory stays flat whatever
//     the traffic.
//   - Each customer holds assets at every simulated institution (see Orgs).
//     Customer BigCustomer has, at BigDepositOrg, a demand-deposit account
//     with BigDepositTransactions rows over three years, and, at BigCardOrg, a
//     card with BigCardApprovals domestic approvals: the lists that exercise
//     pagination. BigDepositAccount and BigCard name them.
//   - Every response carries the request's x-api-tran-id, errors included.
//     Errors have the SPEC §5 shape {"rsp_code","rsp_msg"} and the HTTP status
//     of the code's first three digits; OAuth endpoints answer
//     {"error","error_description"} instead.
//   - Resource, CA and mgmts APIs need "Authorization: Bearer" with a token
//     this simulator issued and an x-api-tran-id header (40002 without them),
//     answer 40101 for an unknown or expired token, 40103 for a revoked one
//     and 40104 when the token's scope does not cover the API. Tokens are
//     crypto/rand values kept in memory (beyond 131072 the oldest are
//     forgotten) and bound to one customer.
//   - Pagination: limit defaults to 500, above 500 answers 42901 (HTTP 429),
//     next_page is an opaque 20-digit key, empty on the last page. Every row
//     of a list is returned exactly once when a client follows next_page
//     with the same filters.
//   - Bodies are gzip-compressed when the request accepts gzip, with a
//     Content-Length except for streamed padded bodies (x-sim-fault: big=N
//     above one MiB).
//   - Nothing the simulator logs contains payload values: log lines carry
//     the route pattern (not the path, which can hold a card_id), the
//     status, the rsp_code and the transaction id.
//
// # Choosing the customer
//
// A user token is bound to one customer. /oauth/2.0/authorize takes it from
// the simulator-only header x-sim-customer (a decimal index), else from
// x-user-ci (a customer's CI), else derives it from client_id and org_code.
// The password grant takes it from the signed consent in password when that
// came from /ca/sign_result, else from username (the CI), else derives it
// from username. Tests skip the HTTP dance with IssueToken.
//
// # Fault injection
//
// The request header x-sim-fault holds a comma-separated list of:
//
//	429      answer 42901 with HTTP 429
//	500      answer 50001 with HTTP 500
//	slow     wait Options.SlowDelay (or until the request is cancelled) first
//	reset    abort the connection with a TCP RST (see fault.go)
//	garbage  HTTP 200 with the first half of the real body: invalid JSON
//	big=N    pad the real JSON body to exactly N bytes (N ≤ MaxBigFault)
//
// big=N sizes the uncompressed body: an object response is rewritten to end
// in a "sim_padding" string field (or in whitespace when fewer than 17 bytes
// are missing) so that it is still valid JSON of exactly N bytes; a body
// already N bytes or longer is sent unchanged. The padding is streamed, never
// held in memory.
//
// # Deviations from the standard, on purpose
//
//   - All institutions share one host; org_code in the request selects the
//     institution, and /mgmts/orgs reports the request's own scheme and host
//     as every institution's domain so that clients that follow it reach the
//     simulator.
//   - Wrong methods answer 40301 (HTTP 403, "invalid API call") with an Allow
//     header rather than 405, because SPEC §5 ties the HTTP status to the
//     rsp_code.
//   - The token endpoints do not insist on x-api-tran-id (the standard does),
//     so that plain OAuth clients work; they echo it when sent.
//   - Any client_id and client_secret are accepted.
package sim
