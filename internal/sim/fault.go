package sim

import (
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// FaultHeader is the request header that injects faults into one response;
// see the package doc for its values.
const FaultHeader = "x-sim-fault"

// MaxBigFault is the largest N accepted by "x-sim-fault: big=N" (64 MiB).
const MaxBigFault = 64 << 20

// fault is a parsed x-sim-fault header. Several may combine, e.g.
// "slow,garbage"; status and reset end the request before routing.
type fault struct {
	slow    bool
	reset   bool
	status  int // 429 or 500: answer that error instead of the real response
	garbage bool
	big     int // pad the real body to this many bytes
}

func parseFault(v string) (fault, error) {
	var f fault
	if strings.TrimSpace(v) == "" {
		return f, nil
	}
	for _, item := range strings.Split(v, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		switch {
		case item == "":
		case item == "429":
			f.status = http.StatusTooManyRequests
		case item == "500":
			f.status = http.StatusInternalServerError
		case item == "slow":
			f.slow = true
		case item == "reset":
			f.reset = true
		case item == "garbage":
			f.garbage = true
		case strings.HasPrefix(item, "big="):
			n, err := strconv.Atoi(strings.TrimPrefix(item, "big="))
			if err != nil || n < 0 || n > MaxBigFault {
				return fault{}, errf(codeBadParam, FaultHeader+" big=N needs 0 ≤ N ≤ 67108864")
			}
			f.big = n
		default:
			return fault{}, errf(codeBadParam, "unknown "+FaultHeader+" value")
		}
	}
	return f, nil
}

// resetConnection aborts the connection so that the client sees a reset,
// not a response. Over HTTP/1.1 (the only protocol Start offers) it hijacks
// the connection, sets SO_LINGER to 0 on the TCP socket beneath the
// *tls.Conn and closes that socket directly: closing the tls.Conn instead
// would first send a close_notify alert, which clients read as a clean EOF.
// Where hijacking is impossible (HTTP/2, recorders) it panics with
// http.ErrAbortHandler, which net/http turns into a stream reset or a
// dropped connection.
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}
