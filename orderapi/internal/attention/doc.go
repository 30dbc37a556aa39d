// Package attention is the order API's attention webhook (PROTOCOL.md,
// "Receipts and attention"): it tells an operator's endpoint about orders
// nobody has received (order.undelivered) or looked at (order.unseen) in
// time.
//
// The schedule lives in the database (store.AlertSchedule): each order's
// two alerts are rows written in the order's own transaction, due
// UNDELIVERED_AFTER and UNSEEN_AFTER after placement. A Scheduler, one per
// order API replica, does the rest off the request path:
//
//   - after an order commits, Placed hands it to a goroutine that asks
//     Redis presence whether the merchant has a socket online; when none
//     is, the order's undelivered alert is made due at once;
//   - every PollInterval (and whenever there is news) it deletes due
//     alerts whose order already has its receipt, then claims due alerts
//     with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL) and sends each
//     from a bounded set of workers;
//   - a 2xx completes an alert; any other answer, no answer within 10 s or
//     a network error schedules a retry with exponential backoff and full
//     jitter (Backoff), with the same event id, until 24 h after it fired.
//
// A replica that dies while sending leaves the alert leased; the lease
// ends and any replica (or the restarted one) sends it again, so delivery
// is at least once and receivers deduplicate by X-Orderpush-Event-Id.
//
// A Scheduler is safe for concurrent use; Run owns its goroutines and
// returns only after all of them ended.
package attention
