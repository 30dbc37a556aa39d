-- +goose Up
-- Receipts (PROTOCOL.md "Receipts and attention"). seq is the seq of the
-- order's own "order" event: an ack of a seq at or above it delivers the
-- order. Orders placed before this migration get 0, so the first ack after
-- it marks them delivered. delivered_ms / seen_ms are the first ack and the
-- first seen (or processing), Unix ms; NULL until then.
ALTER TABLE orders ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN delivered_ms BIGINT;
ALTER TABLE orders ADD COLUMN seen_ms BIGINT;
-- An ack touches only the merchant's undelivered orders up to its seq.
CREATE INDEX orders_undelivered ON orders (merchant_id, seq) WHERE delivered_ms IS NULL;

-- +goose Down
DROP INDEX orders_undelivered;
ALTER TABLE orders DROP COLUMN seen_ms;
ALTER TABLE orders DROP COLUMN delivered_ms;
ALTER TABLE orders DROP COLUMN seq;
