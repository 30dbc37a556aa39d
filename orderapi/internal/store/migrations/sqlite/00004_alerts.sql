-- +goose Up
-- Same schema as migrations/postgres/00004_alerts.sql in SQLite's dialect.
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    order_no     TEXT NOT NULL,
    merchant_id  TEXT NOT NULL,
    type         TEXT NOT NULL CHECK (type IN ('order.undelivered', 'order.unseen')),
    placed_ms    INTEGER NOT NULL,
    due_ms       INTEGER,
    lease        TEXT,
    fired_ms     INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    completed_ms INTEGER,
    UNIQUE (order_no, type)
);
CREATE INDEX alerts_due ON alerts (due_ms) WHERE due_ms IS NOT NULL;
CREATE INDEX alerts_firing ON alerts (due_ms) WHERE due_ms IS NOT NULL AND fired_ms IS NOT NULL;

-- +goose Down
DROP TABLE alerts;
