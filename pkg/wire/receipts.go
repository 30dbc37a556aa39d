package wire

// MaxReceiptItems bounds a receipts batch (POST /receipts): its acks and
// seen together. With the longest merchant ids and order numbers a full
// batch is about 53 KB, under the order API's 64 KiB body limit.
const MaxReceiptItems = 300

// ReceiptBatch is the body of POST /receipts: receipts a gateway forwards
// for the merchants of its sockets (PROTOCOL.md "Receipts and attention").
type ReceiptBatch struct {
	Acks []AckReceipt  `json:"acks,omitempty"`
	Seen []SeenReceipt `json:"seen,omitempty"`
}

// AckReceipt is a merchant's cumulative ack.
type AckReceipt struct {
	MerchantID string `json:"merchantId"`
	Seq        uint64 `json:"seq"`
}

// SeenReceipt is a seen of an order by a socket of MerchantID.
type SeenReceipt struct {
	MerchantID string `json:"merchantId"`
	OrderNo    string `json:"orderNo"`
}

// ReceiptCounts counts one kind of a batch's receipts: applied (recorded,
// or already recorded) and skipped (refused; nothing written).
type ReceiptCounts struct {
	Applied int `json:"applied"`
	Skipped int `json:"skipped"`
}

// ReceiptResult is the answer to POST /receipts.
type ReceiptResult struct {
	Acks ReceiptCounts `json:"acks"`
	Seen ReceiptCounts `json:"seen"`
}
