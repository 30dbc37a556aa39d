-- +goose Up
-- One row per merchant that ever had an order: its event sequence and its
-- number of unprocessed orders. Bumping this row serialises the merchant's
-- events and gives each its seq (ARCHITECTURE.md "How an order travels" 1).
CREATE TABLE merchants (
    id      TEXT PRIMARY KEY,
    seq     BIGINT NOT NULL,
    pending BIGINT NOT NULL CHECK (pending >= 0)
);

-- id orders a merchant's orders newest first and is the paging cursor's
-- position; order_no is the public key.
CREATE TABLE orders (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_no     TEXT NOT NULL UNIQUE,
    merchant_id  TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    date         TEXT NOT NULL CHECK (length(date) = 10),
    price_cents  BIGINT NOT NULL CHECK (price_cents >= 0),
    status       TEXT NOT NULL CHECK (status IN ('pending', 'processed')),
    created_ms   BIGINT NOT NULL,
    processed_ms BIGINT
);
CREATE INDEX orders_merchant ON orders (merchant_id, id);
CREATE INDEX orders_merchant_status ON orders (merchant_id, status, id);

-- The event log and outbox: one row per merchant event, the socket frame
-- exactly as published. published is set once Redis has it.
CREATE TABLE events (
    merchant_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    frame       TEXT NOT NULL,
    order_sum   BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    published   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (merchant_id, seq)
);
CREATE INDEX events_unpublished ON events (merchant_id, seq) WHERE NOT published;
CREATE INDEX events_created ON events (created_ms);

-- +goose Down
DROP TABLE events;
DROP TABLE orders;
DROP TABLE merchants;
