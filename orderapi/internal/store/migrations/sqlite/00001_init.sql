-- +goose Up
-- Same schema as migrations/postgres, in SQLite's dialect: id is the rowid
-- alias, booleans are 0/1.
CREATE TABLE merchants (
    id      TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL,
    pending INTEGER NOT NULL CHECK (pending >= 0)
);

CREATE TABLE orders (
    id           INTEGER PRIMARY KEY,
    order_no     TEXT NOT NULL UNIQUE,
    merchant_id  TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    date         TEXT NOT NULL CHECK (length(date) = 10),
    price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
    status       TEXT NOT NULL CHECK (status IN ('pending', 'processed')),
    created_ms   INTEGER NOT NULL,
    processed_ms INTEGER
);
CREATE INDEX orders_merchant ON orders (merchant_id, id);
CREATE INDEX orders_merchant_status ON orders (merchant_id, status, id);

CREATE TABLE events (
    merchant_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    frame       TEXT NOT NULL,
    order_sum   INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    published   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (merchant_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_unpublished ON events (merchant_id, seq) WHERE NOT published;
CREATE INDEX events_created ON events (created_ms);

-- +goose Down
DROP TABLE events;
DROP TABLE orders;
DROP TABLE merchants;
