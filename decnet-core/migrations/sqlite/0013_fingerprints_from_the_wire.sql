-- Issue 14: the sensor writes fingerprints. Each row now says how it was computed (the raw string
-- the method hashes, p0f's label, whether the input was cut short) and where it was seen (the decky
-- and its port). The natural key covers (kind, value, attacker_ip, decky, port).
ALTER TABLE fingerprints ADD COLUMN raw TEXT;
ALTER TABLE fingerprints ADD COLUMN label TEXT;
ALTER TABLE fingerprints ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;
ALTER TABLE fingerprints ADD COLUMN decky TEXT NOT NULL DEFAULT '';
ALTER TABLE fingerprints ADD COLUMN port INTEGER NOT NULL DEFAULT 0;

-- The deckies' own fingerprints (their SYN-ACK, TLS/SSH server hellos): what the prober's realism
-- checks compare with the persona. Never mixed with attackers'.
CREATE TABLE decky_fingerprints (
    id          INTEGER PRIMARY KEY,
    decky       TEXT    NOT NULL,
    port        INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    raw         TEXT,
    label       TEXT,
    partial     INTEGER NOT NULL,
    first_seen  TEXT    NOT NULL,
    last_seen   TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    natural_key BLOB    NOT NULL UNIQUE  -- sha256(kind, value, decky, port)
);
CREATE INDEX decky_fingerprints_decky ON decky_fingerprints (decky);
