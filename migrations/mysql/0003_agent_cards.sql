-- One A2A Agent Card per CAIP-10 account (the card JSON as registered, signatures included).
-- MEDIUMTEXT: cards may reach the 64 KiB limit.
CREATE TABLE IF NOT EXISTS agent_cards (
    account     VARCHAR(255) NOT NULL PRIMARY KEY,
    chain       VARCHAR(255) NOT NULL,
    name        VARCHAR(255) NOT NULL,
    card        MEDIUMTEXT   NOT NULL,
    created_ms  BIGINT       NOT NULL,
    updated_ms  BIGINT       NOT NULL
);
CREATE INDEX agent_cards_name ON agent_cards (name);
