-- Budget windows: one row per budget (scope, window spec and session/account in the key).
-- Amounts are nano-USD. `reserved_*` is used only where replicas share this table
-- (PostgreSQL); an embedded store keeps in-flight reservations in memory.
CREATE TABLE IF NOT EXISTS budgets (
    budget_key         VARCHAR(255) NOT NULL PRIMARY KEY,
    window_start_ms    BIGINT NOT NULL,
    rounds             BIGINT NOT NULL,
    spent_nano_usd     BIGINT NOT NULL,
    reserved_nano_usd  BIGINT NOT NULL,
    reserved_until_ms  BIGINT NOT NULL
);
