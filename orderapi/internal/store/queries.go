package store

import "github.com/jmoiron/sqlx"

// queries holds every statement, rebound once for the dialect.
type queries struct {
	insertOrder, bumpMerchant, insertEvent               string
	processOrder, unprocessMerchant                      string
	getOrder, orderID, merchant, events                  string
	listAll, listAllBefore, listStatus, listStatusBefore string
	unpublished, unpublishedLocked, unpublishedMerchants string
	prune, relayLock                                     string
	registerMerchant, registeredMerchant                 string
	setOrderSeq, ackOrders, seenOrder, bumpSeq           string
	receiptCounts                                        string
}

const orderCols = `order_no, merchant_id, user_id, date, price_cents, status, created_ms`

// orderSel is what every read of an order returns: its columns and receipts.
const orderSel = orderCols + `, delivered_ms, seen_ms`

const unpublished = `SELECT merchant_id, seq, frame, order_sum, created_ms FROM events
	WHERE merchant_id = ? AND NOT published ORDER BY seq LIMIT ?`

func newQueries(db *sqlx.DB) queries {
	r := db.Rebind
	return queries{
		// ON CONFLICT DO NOTHING keeps the transaction alive on a collision
		// (PostgreSQL aborts a transaction on a unique violation), so the
		// caller can retry with another number in the same transaction.
		insertOrder: r(`INSERT INTO orders (` + orderCols + `) VALUES (?, ?, ?, ?, ?, 'pending', ?)
			ON CONFLICT (order_no) DO NOTHING RETURNING id`),
		bumpMerchant: r(`INSERT INTO merchants (id, seq, pending) VALUES (?, 1, 1)
			ON CONFLICT (id) DO UPDATE SET seq = merchants.seq + 1, pending = merchants.pending + 1
			RETURNING seq, pending`),
		insertEvent: r(`INSERT INTO events (merchant_id, seq, frame, order_sum, created_ms, published)
			VALUES (?, ?, ?, ?, ?, FALSE)`),
		// The status condition makes processing idempotent under
		// concurrency: of two racing calls exactly one updates the row.
		// Processing is a person's action on the order: it also sets seen_ms
		// when unset.
		processOrder: r(`UPDATE orders SET status = 'processed', processed_ms = ?, seen_ms = COALESCE(seen_ms, ?)
			WHERE order_no = ? AND status = 'pending' RETURNING ` + orderSel),
		setOrderSeq: r(`UPDATE orders SET seq = ? WHERE order_no = ?`),
		// One statement per ack, on the orders_undelivered index: cheap and
		// idempotent (a repeated or lower ack matches nothing).
		ackOrders: r(`UPDATE orders SET delivered_ms = ?
			WHERE merchant_id = ? AND seq <= ? AND delivered_ms IS NULL RETURNING created_ms`),
		seenOrder: r(`UPDATE orders SET seen_ms = ? WHERE order_no = ? AND seen_ms IS NULL RETURNING ` + orderSel),
		bumpSeq:   r(`UPDATE merchants SET seq = seq + 1 WHERE id = ? RETURNING seq, pending`),
		receiptCounts: r(`SELECT COUNT(*) AS pending,
			COALESCE(SUM(CASE WHEN delivered_ms IS NULL THEN 1 ELSE 0 END), 0) AS undelivered,
			COALESCE(SUM(CASE WHEN seen_ms IS NULL THEN 1 ELSE 0 END), 0) AS unseen
			FROM orders WHERE merchant_id = ? AND status = 'pending'`),
		unprocessMerchant: r(`UPDATE merchants SET seq = seq + 1, pending = pending - 1
			WHERE id = ? RETURNING seq, pending`),
		getOrder: r(`SELECT ` + orderSel + ` FROM orders WHERE order_no = ?`),
		orderID:  r(`SELECT id FROM orders WHERE order_no = ? AND merchant_id = ?`),
		merchant: r(`SELECT seq, pending FROM merchants WHERE id = ?`),
		events:   r(`SELECT frame FROM events WHERE merchant_id = ? AND seq > ? ORDER BY seq LIMIT ?`),
		listAll: r(`SELECT ` + orderSel + ` FROM orders WHERE merchant_id = ?
			ORDER BY id DESC LIMIT ?`),
		listAllBefore: r(`SELECT ` + orderSel + ` FROM orders WHERE merchant_id = ? AND id < ?
			ORDER BY id DESC LIMIT ?`),
		listStatus: r(`SELECT ` + orderSel + ` FROM orders WHERE merchant_id = ? AND status = ?
			ORDER BY id DESC LIMIT ?`),
		listStatusBefore: r(`SELECT ` + orderSel + ` FROM orders WHERE merchant_id = ? AND status = ? AND id < ?
			ORDER BY id DESC LIMIT ?`),
		unpublishedMerchants: r(`SELECT DISTINCT merchant_id FROM events
			WHERE NOT published AND created_ms <= ? LIMIT ?`),
		unpublished: r(unpublished),
		// PostgreSQL only: SQLite has no row locks (and one writer anyway).
		unpublishedLocked: r(unpublished + ` FOR UPDATE SKIP LOCKED`),
		prune:             r(`DELETE FROM events WHERE published AND created_ms < ?`),
		// One relay per merchant at a time across replicas: the rows are
		// locked with SKIP LOCKED, and this transaction-scoped advisory lock
		// keeps a second relay from publishing a merchant's later rows while
		// the first still holds its earlier ones (seq order per merchant).
		relayLock: r(`SELECT pg_try_advisory_xact_lock(hashtextextended('orderpush relay ' || CAST(? AS TEXT), 0))`),
		registerMerchant: r(`INSERT INTO registered_merchants (id, registered_ms) VALUES (?, ?)
			ON CONFLICT (id) DO NOTHING RETURNING registered_ms`),
		registeredMerchant: r(`SELECT registered_ms FROM registered_merchants WHERE id = ?`),
	}
}
