-- One A2A Agent Card per CAIP-10 account (the card JSON as registered, signatures included).
CREATE TABLE IF NOT EXISTS agent_cards (
    account     TEXT    NOT NULL PRIMARY KEY,
    chain       TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    card        TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_cards_name ON agent_cards (name);
