-- Issue 12: the prober's realism results. 0002's probe_results (one row per probe and time,
-- never written by any worker) is replaced by one row per (decky, check, subject) that carries
-- its current outcome: severity `pass` for a check that passed (stored too, so "all clean" is
-- an assertion), else the finding's severity, what was expected and what was seen, when the
-- outcome was first and last seen, and when a finding turned into a pass (resolved_at).
DROP TABLE probe_results;

CREATE TABLE probe_results (
    id          INTEGER PRIMARY KEY,
    decky       TEXT    NOT NULL,
    check_name  TEXT    NOT NULL,
    subject     TEXT    NOT NULL,   -- what was probed: "ssh/22", "stack", "fleet"
    severity    TEXT    NOT NULL CHECK (severity IN ('pass', 'info', 'low', 'medium', 'high', 'critical')),
    expected    TEXT    NOT NULL,
    seen        TEXT    NOT NULL,
    first_seen  TEXT    NOT NULL,
    last_seen   TEXT    NOT NULL,
    resolved_at TEXT,
    UNIQUE (decky, check_name, subject)
);
CREATE INDEX probe_results_severity ON probe_results (severity, last_seen);

-- The addresses the prober probes from (its vantage namespace on the decoy bridge): the
-- correlator never counts them as attackers.
CREATE TABLE probe_vantages (
    ip         TEXT NOT NULL PRIMARY KEY,
    name       TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
