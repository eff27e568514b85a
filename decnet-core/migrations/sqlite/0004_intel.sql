-- What the correlator derives (decnet correlate). Every row is a function of the stored events,
-- flows and credentials, recomputed for what new input touches, so that replaying or resuming
-- changes nothing (see decnet-core/src/repo/correlation.rs).

-- Probe episodes from flows: probe flows of one kind from one attacker with gaps <= the scan gap.
-- `detected` = the episode passed the scan thresholds (the others are kept so that an episode's
-- start is known when more probes arrive).
CREATE TABLE scans (
    id           INTEGER PRIMARY KEY,
    attacker_ip  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,   -- tcp_syn, tcp_connect, udp, ping_sweep
    started_at   TEXT    NOT NULL,
    ended_at     TEXT    NOT NULL,
    probes       INTEGER NOT NULL,
    port_count   INTEGER NOT NULL,
    ports        TEXT    NOT NULL,   -- JSON array of ports (bounded)
    host_count   INTEGER NOT NULL,
    hosts        TEXT    NOT NULL,   -- JSON array of decky names or IPs (bounded)
    rate_per_min INTEGER NOT NULL,
    detected     INTEGER NOT NULL,
    UNIQUE (attacker_ip, kind, started_at)
);
CREATE INDEX scans_detected ON scans (detected, started_at);

-- Lateral movement: attackers that touched >= 2 deckies, with their time-ordered hop path.
CREATE TABLE traversals (
    attacker_ip TEXT    PRIMARY KEY,
    hop_count   INTEGER NOT NULL,
    path        TEXT    NOT NULL,    -- JSON array of {decky, first_seen_ns}
    first_seen  TEXT    NOT NULL,
    last_seen   TEXT    NOT NULL
);

-- A decky that itself opened connections to another decky (a compromised decky used to pivot).
CREATE TABLE pivots (
    src_decky  TEXT    NOT NULL,
    dst_decky  TEXT    NOT NULL,
    dst_port   INTEGER NOT NULL,
    proto      INTEGER NOT NULL,
    first_seen TEXT    NOT NULL,
    last_seen  TEXT    NOT NULL,
    PRIMARY KEY (src_decky, dst_decky, dst_port, proto)
);

-- The same secret tried against >= 2 (decky, service) pairs.
CREATE TABLE credential_reuse (
    secret_hash      BLOB    PRIMARY KEY,
    secret_kind      TEXT    NOT NULL,
    secret_printable TEXT    NOT NULL,
    target_count     INTEGER NOT NULL,
    targets          TEXT    NOT NULL,  -- JSON array of "decky/service" (bounded)
    attacker_count   INTEGER NOT NULL,
    attackers        TEXT    NOT NULL,  -- JSON array of IPs (bounded)
    credential_rows  INTEGER NOT NULL,  -- distinct attacker x target x principal
    first_seen       TEXT    NOT NULL,
    last_seen        TEXT    NOT NULL
);

-- Attackers whose evidence the correlator changed, by a sequence number that grows with every
-- correlator transaction: the profiler's work queue (it keeps a cursor on seq).
CREATE TABLE attacker_evidence (
    attacker_ip TEXT    PRIMARY KEY,
    seq         INTEGER NOT NULL
);
CREATE INDEX attacker_evidence_seq ON attacker_evidence (seq, attacker_ip);
