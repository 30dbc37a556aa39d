-- +goose Up
-- The merchant registry: see migrations/postgres/00002_hardening.sql.
CREATE TABLE registered_merchants (
    id            TEXT PRIMARY KEY,
    registered_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- +goose Down
DROP TABLE registered_merchants;
