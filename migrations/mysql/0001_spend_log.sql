-- One row per request: who, where it went, the five token counts and the cost in nano-USD.
CREATE TABLE IF NOT EXISTS spend_log (
    id                 VARCHAR(128) NOT NULL,
    time_ms            BIGINT NOT NULL,
    account            VARCHAR(255),
    session            VARCHAR(255),
    route              VARCHAR(255),
    provider           VARCHAR(255),
    model              VARCHAR(255),
    input_no_cache     BIGINT NOT NULL,
    input_cache_read   BIGINT NOT NULL,
    input_cache_write  BIGINT NOT NULL,
    output_text        BIGINT NOT NULL,
    output_reasoning   BIGINT NOT NULL,
    cost_nano_usd      BIGINT NOT NULL,
    latency_ms         BIGINT NOT NULL,
    success            INTEGER NOT NULL,
    error_type         VARCHAR(255),
    attempts           INTEGER NOT NULL,
    estimated          INTEGER NOT NULL
);
CREATE INDEX spend_log_time ON spend_log (time_ms);
CREATE INDEX spend_log_account_time ON spend_log (account, time_ms);
CREATE INDEX spend_log_session_time ON spend_log (session, time_ms);
CREATE INDEX spend_log_model_time ON spend_log (model, time_ms);
CREATE INDEX spend_log_provider_time ON spend_log (provider, time_ms);
CREATE INDEX spend_log_route_time ON spend_log (route, time_ms);
