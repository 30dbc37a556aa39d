-- +goose Up
-- The attention webhook's schedule (PROTOCOL.md "Receipts and attention"):
-- one row per order and alert type, written in the order's transaction
-- while the webhook is configured. due_ms is when a replica must next act
-- on the row: fire it, retry it, or take it over because the replica that
-- leased it stopped (a claim moves due_ms past the lease's end). NULL once
-- the alert completed or was given up. A row whose order got its receipt
-- before it fired is deleted.
CREATE TABLE alerts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_no     TEXT NOT NULL,
    merchant_id  TEXT NOT NULL,
    type         TEXT NOT NULL CHECK (type IN ('order.undelivered', 'order.unseen')),
    placed_ms    BIGINT NOT NULL,
    due_ms       BIGINT,
    lease        TEXT,
    fired_ms     BIGINT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    completed_ms BIGINT,
    UNIQUE (order_no, type)
);
-- "What is due" reads only rows still to act on, oldest first.
CREATE INDEX alerts_due ON alerts (due_ms) WHERE due_ms IS NOT NULL;
-- orderapi_alerts_pending counts fired alerts waiting for a 2xx.
CREATE INDEX alerts_firing ON alerts (due_ms) WHERE due_ms IS NOT NULL AND fired_ms IS NOT NULL;

-- +goose Down
DROP TABLE alerts;
