-- One row per request: who, where it went, the five token counts and the cost in nano-USD.
CREATE TABLE IF NOT EXISTS spend_log (
    id                 TEXT    NOT NULL,
    time_ms            BIGINT NOT NULL,
    account            TEXT,
    session            TEXT,
    route              TEXT,
    provider           TEXT,
    model              TEXT,
    input_no_cache     BIGINT NOT NULL,
    input_cache_read   BIGINT NOT NULL,
    input_cache_write  BIGINT NOT NULL,
    output_text        BIGINT NOT NULL,
    output_reasoning   BIGINT NOT NULL,
    cost_nano_usd      BIGINT NOT NULL,
    latency_ms         BIGINT NOT NULL,
    success            INTEGER NOT NULL,
    error_type         TEXT,
    attempts           INTEGER NOT NULL,
    estimated          INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_log_time ON spend_log (time_ms);
CREATE INDEX IF NOT EXISTS spend_log_account_time ON spend_log (account, time_ms);
CREATE INDEX IF NOT EXISTS spend_log_session_time ON spend_log (session, time_ms);
CREATE INDEX IF NOT EXISTS spend_log_model_time ON spend_log (model, time_ms);
CREATE INDEX IF NOT EXISTS spend_log_provider_time ON spend_log (provider, time_ms);
CREATE INDEX IF NOT EXISTS spend_log_route_time ON spend_log (route, time_ms);
