-- What the correlator derives; see migrations/sqlite/0004_intel.sql for the commentary.

CREATE TABLE scans (
    id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    attacker_ip  VARCHAR(45) NOT NULL,
    kind         VARCHAR(64) NOT NULL,
    started_at   CHAR(30)    NOT NULL,
    ended_at     CHAR(30)    NOT NULL,
    probes       BIGINT      NOT NULL,
    port_count   BIGINT      NOT NULL,
    ports        MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    host_count   BIGINT      NOT NULL,
    hosts        MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    rate_per_min BIGINT      NOT NULL,
    detected     SMALLINT    NOT NULL,
    UNIQUE KEY scans_natural (attacker_ip, kind, started_at),
    KEY scans_detected (detected, started_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE traversals (
    attacker_ip VARCHAR(45) NOT NULL PRIMARY KEY,
    hop_count   BIGINT      NOT NULL,
    path        MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    first_seen  CHAR(30)    NOT NULL,
    last_seen   CHAR(30)    NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE pivots (
    src_decky  VARCHAR(64) NOT NULL,
    dst_decky  VARCHAR(64) NOT NULL,
    dst_port   INT         NOT NULL,
    proto      INT         NOT NULL,
    first_seen CHAR(30)    NOT NULL,
    last_seen  CHAR(30)    NOT NULL,
    PRIMARY KEY (src_decky, dst_decky, dst_port, proto)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- secret_hash is a BLOB (BINARY reads back as text through sqlx's Any driver), unique on its
-- full 32 bytes.
CREATE TABLE credential_reuse (
    id               BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    secret_hash      BLOB          NOT NULL,
    secret_kind      VARCHAR(64)   NOT NULL,
    secret_printable VARCHAR(1024) NOT NULL,
    target_count     BIGINT        NOT NULL,
    targets          MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    attacker_count   BIGINT        NOT NULL,
    attackers        MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    credential_rows  BIGINT        NOT NULL,
    first_seen       CHAR(30)      NOT NULL,
    last_seen        CHAR(30)      NOT NULL,
    UNIQUE KEY credential_reuse_secret (secret_hash(32))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE attacker_evidence (
    attacker_ip VARCHAR(45) NOT NULL PRIMARY KEY,
    seq         BIGINT      NOT NULL,
    KEY attacker_evidence_seq (seq, attacker_ip)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
