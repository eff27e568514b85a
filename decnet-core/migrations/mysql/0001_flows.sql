-- One row per flow direction export. Timestamps are RFC 3339 UTC with exactly 9 fraction digits
-- and 'Z' (see decnet_core::time_fmt), so string order is time order.
CREATE TABLE flows (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    bridge     VARCHAR(64)  NOT NULL,
    port       VARCHAR(64)  NOT NULL,
    src_ip     VARCHAR(45)  NOT NULL,
    dst_ip     VARCHAR(45)  NOT NULL,
    src_port   INT          NOT NULL,
    dst_port   INT          NOT NULL,
    proto      SMALLINT     NOT NULL,
    vlan       SMALLINT     NOT NULL,
    packets    BIGINT       NOT NULL,
    bytes      BIGINT       NOT NULL,
    tcp_flags  SMALLINT     NOT NULL,
    first_seen CHAR(30)     NOT NULL,
    last_seen  CHAR(30)     NOT NULL,
    ended      SMALLINT      NOT NULL DEFAULT 0,
    UNIQUE KEY flows_identity (bridge, src_ip, dst_ip, src_port, dst_port, proto, vlan, first_seen),
    KEY flows_first_seen (first_seen),
    KEY flows_src_ip (src_ip)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
