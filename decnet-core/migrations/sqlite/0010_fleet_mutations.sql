-- The mutator (issue 13). `fleet_generations`: the desired fleet of a deployment, one row per
-- change (the generation is the id); `decnet deploy` applies the newest and records the
-- outcome. `mutation_requests`: the operator's queue (API → mutator), claimed and answered.
CREATE TABLE fleet_generations (
    id          INTEGER PRIMARY KEY,
    bridge      TEXT    NOT NULL,
    fleet       TEXT    NOT NULL,  -- JSON: the effective fleet
    file_fleet  TEXT    NOT NULL,  -- JSON: the fleet file it derives from
    restart     TEXT    NOT NULL,  -- JSON: decky names to restart
    cause       TEXT    NOT NULL,  -- deploy, file, operator, schedule
    actor       TEXT    NOT NULL,
    request_id  INTEGER,
    status      TEXT    NOT NULL,  -- pending, applied, failed, superseded
    reason      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    applied_at  TEXT,
    UNIQUE (request_id)
);
CREATE INDEX fleet_generations_bridge ON fleet_generations (bridge, id);

CREATE TABLE mutation_requests (
    id            INTEGER PRIMARY KEY,
    decky         TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    args          TEXT    NOT NULL,  -- JSON
    requested_by  TEXT    NOT NULL,
    requested_at  TEXT    NOT NULL,
    status        TEXT    NOT NULL,  -- pending, claimed, applied, failed
    claimed_by    TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX mutation_requests_status ON mutation_requests (status, id);
CREATE INDEX mutation_requests_decky ON mutation_requests (decky, id);
