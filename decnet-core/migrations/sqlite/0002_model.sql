-- The full data model. Conventions: timestamps are fixed-width RFC 3339 UTC text (9 fraction
-- digits, 'Z'), so text order is time order; IPs are canonical text; attacker-supplied bytes are
-- BLOBs; every natural key is UNIQUE so that re-ingest and replay are idempotent.

CREATE TABLE deckies (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    ip          TEXT    NOT NULL,
    hostname    TEXT    NOT NULL,
    os_family   TEXT    NOT NULL,
    archetype   TEXT    NOT NULL,
    persona     TEXT    NOT NULL,   -- JSON object
    status      TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE decky_services (
    decky       TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    port        INTEGER NOT NULL,
    settings    TEXT    NOT NULL,   -- JSON object
    PRIMARY KEY (decky, service, port)
);

-- One row per decoy-service log event. (ts, dedup_key) is unique and makes re-ingest a no-op;
-- dedup_key is the first 8 bytes of the SHA-256 of the raw line (or a producer-supplied key).
-- Leading with ts keeps that index append-mostly (events arrive roughly in time order) and lets
-- it serve time-range queries too; the only other index is by attacker. Both matter for ingest
-- speed: every index is one more B-tree insert per event.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    ts            TEXT    NOT NULL,
    decky         TEXT    NOT NULL,
    service       TEXT    NOT NULL,
    event_type    TEXT    NOT NULL,
    attacker_ip   TEXT,
    attacker_port INTEGER,
    fields        TEXT    NOT NULL, -- JSON object
    raw           BLOB    NOT NULL,
    dedup_key     INTEGER NOT NULL,
    UNIQUE (ts, dedup_key)
);
CREATE INDEX events_attacker ON events (attacker_ip, ts);

CREATE TABLE attackers (
    id               INTEGER PRIMARY KEY,
    ip               TEXT    NOT NULL UNIQUE,
    first_seen       TEXT    NOT NULL,
    last_seen        TEXT    NOT NULL,
    event_count      INTEGER NOT NULL DEFAULT 0,
    session_count    INTEGER NOT NULL DEFAULT 0,
    credential_count INTEGER NOT NULL DEFAULT 0,
    flow_count       INTEGER NOT NULL DEFAULT 0,
    updated_at       TEXT    NOT NULL
);
CREATE INDEX attackers_last_seen ON attackers (last_seen);

-- (decky, service) pairs an attacker touched; ordered by first_seen this is its traversal path.
CREATE TABLE attacker_touches (
    attacker_ip TEXT NOT NULL,
    decky       TEXT NOT NULL,
    service     TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    last_seen   TEXT NOT NULL,
    PRIMARY KEY (attacker_ip, decky, service)
);

CREATE TABLE fingerprints (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,   -- tcp_syn, ja3, ja4, hassh, http_ua, ...
    value       TEXT    NOT NULL,
    attacker_ip TEXT    NOT NULL,
    first_seen  TEXT    NOT NULL,
    last_seen   TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    natural_key BLOB    NOT NULL UNIQUE  -- sha256(kind, value, attacker_ip)
);
CREATE INDEX fingerprints_attacker ON fingerprints (attacker_ip);

CREATE TABLE credentials (
    id               INTEGER PRIMARY KEY,
    attacker_ip      TEXT    NOT NULL,
    decky            TEXT    NOT NULL,
    service          TEXT    NOT NULL,
    principal        BLOB    NOT NULL,
    secret_kind      TEXT    NOT NULL,
    secret_hash      BLOB    NOT NULL,  -- sha256 of the secret bytes
    secret_printable TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    first_seen       TEXT    NOT NULL,
    last_seen        TEXT    NOT NULL,
    natural_key      BLOB    NOT NULL UNIQUE  -- sha256(attacker_ip, decky, service, principal, kind, secret_hash)
);
CREATE INDEX credentials_attacker ON credentials (attacker_ip);
CREATE INDEX credentials_secret ON credentials (secret_hash);

CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY,
    attacker_ip TEXT    NOT NULL,
    decky       TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    ended_at    TEXT    NOT NULL,
    event_count INTEGER NOT NULL,
    bytes       INTEGER NOT NULL DEFAULT 0,
    commands    TEXT    NOT NULL,   -- JSON array of strings
    closed      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (attacker_ip, decky, service, started_at)
);
CREATE INDEX sessions_started ON sessions (started_at);

CREATE TABLE attacker_profiles (
    attacker_ip    TEXT    PRIMARY KEY,
    behaviour      TEXT    NOT NULL,
    score          INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    factors        TEXT    NOT NULL,  -- JSON array of {factor, weight}
    tools          TEXT    NOT NULL,  -- JSON array
    techniques     TEXT    NOT NULL,  -- JSON array of ATT&CK ids
    evidence_until TEXT    NOT NULL,  -- newest evidence the profile saw
    computed_at    TEXT    NOT NULL
);

CREATE TABLE probe_results (
    id         INTEGER PRIMARY KEY,
    ts         TEXT    NOT NULL,
    decky      TEXT    NOT NULL,
    service    TEXT    NOT NULL,
    check_name TEXT    NOT NULL,
    ok         INTEGER NOT NULL,
    detail     TEXT    NOT NULL,
    UNIQUE (decky, service, check_name, ts)
);

CREATE TABLE mutations (
    id      INTEGER PRIMARY KEY,
    ts      TEXT    NOT NULL,
    decky   TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    detail  TEXT    NOT NULL,  -- JSON
    status  TEXT    NOT NULL,
    UNIQUE (decky, kind, ts)
);

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE,
    password_hash        TEXT    NOT NULL,  -- argon2 PHC string
    role                 TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL
);

CREATE TABLE worker_leases (
    kind         TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    holder       TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    acquired_at  TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    PRIMARY KEY (kind, host)
);

CREATE TABLE worker_cursors (
    worker     TEXT    NOT NULL,
    host       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (worker, host, name)
);

CREATE TABLE worker_counters (
    worker     TEXT    NOT NULL,
    host       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    value      INTEGER NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (worker, host, name)
);
