package wire

import "time"

// Alert types of the attention webhook (PROTOCOL.md, "Receipts and
// attention"). Each fires at most once per order.
const (
	// AlertUndelivered: the order has no deliveredAt UNDELIVERED_AFTER after
	// it was placed, or no socket of its merchant was online at commit.
	AlertUndelivered = "order.undelivered"
	// AlertUnseen: the order has no seenAt UNSEEN_AFTER after it was placed.
	AlertUnseen = "order.unseen"
)

// Alert is one entry of an order's "alerts" in GET /orders/{orderNo}: an
// attention webhook that fired for the order. CompletedAt is nil until a
// receiver answered 2xx (and stays nil when the retries gave up after 24 h).
type Alert struct {
	Type        string
	FiredAt     time.Time
	Attempts    int
	CompletedAt *time.Time
}

// alertTimeFormat is RFC 3339 in UTC with milliseconds, as createdAt.
const alertTimeFormat = "2006-01-02T15:04:05.000Z"

// MarshalJSON writes the times like createdAt; completedAt is null while
// the alert is not completed.
func (a Alert) MarshalJSON() ([]byte, error) {
	var completed *string
	if a.CompletedAt != nil {
		s := a.CompletedAt.UTC().Format(alertTimeFormat)
		completed = &s
	}
	return Marshal(struct {
		Type        string  `json:"type"`
		FiredAt     string  `json:"firedAt"`
		Attempts    int     `json:"attempts"`
		CompletedAt *string `json:"completedAt"`
	}{a.Type, a.FiredAt.UTC().Format(alertTimeFormat), a.Attempts, completed})
}
