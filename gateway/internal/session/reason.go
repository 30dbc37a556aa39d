package session

// Reason is why a session ends, in no transport's words. Each transport
// maps it to its own: WebSocket close codes (PROTOCOL.md "Merchant
// socket"), the end of an SSE stream, an Engine.IO close.
type Reason uint8

// Reasons. What a client does for each is in PROTOCOL.md's close codes.
const (
	None          Reason = iota // still open
	Normal                      // the peer left (WebSocket 1000)
	GoingAway                   // replica shutting down, or the connection is gone: reconnect elsewhere with since (1001)
	Policy                      // token expired or a message flood: get a new token / behave (1008)
	TooBig                      // a client message over 64 KiB (1009)
	TryAgainLater               // slow consumer or overload: back off, reconnect with since (1013)
)

func (r Reason) String() string {
	switch r {
	case None:
		return "none"
	case Normal:
		return "normal"
	case GoingAway:
		return "going_away"
	case Policy:
		return "policy"
	case TooBig:
		return "too_big"
	case TryAgainLater:
		return "try_again_later"
	}
	return "unknown"
}
