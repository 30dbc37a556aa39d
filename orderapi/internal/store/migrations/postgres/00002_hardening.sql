-- +goose Up
-- The merchant registry (MERCHANTS=registered): merchants registered with
-- PUT /merchants/{id}. Registration is permanent; with MERCHANTS=registered
-- only these take orders.
CREATE TABLE registered_merchants (
    id            TEXT PRIMARY KEY,
    registered_ms BIGINT NOT NULL
);

-- +goose Down
DROP TABLE registered_merchants;
