-- One row per flow direction export. Timestamps are RFC 3339 UTC with exactly 9 fraction digits
-- and 'Z' (see decnet_core::time_fmt), so string order is time order.
CREATE TABLE flows (
    id         INTEGER PRIMARY KEY,
    bridge     TEXT    NOT NULL,
    port       TEXT    NOT NULL,
    src_ip     TEXT    NOT NULL,
    dst_ip     TEXT    NOT NULL,
    src_port   INTEGER NOT NULL,
    dst_port   INTEGER NOT NULL,
    proto      INTEGER NOT NULL,
    vlan       INTEGER NOT NULL,
    packets    INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    tcp_flags  INTEGER NOT NULL,
    first_seen TEXT    NOT NULL,
    last_seen  TEXT    NOT NULL,
    ended      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (bridge, src_ip, dst_ip, src_port, dst_port, proto, vlan, first_seen)
);

CREATE INDEX flows_first_seen ON flows (first_seen);
CREATE INDEX flows_src_ip ON flows (src_ip);
