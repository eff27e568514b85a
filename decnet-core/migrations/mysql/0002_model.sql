-- The full data model; see migrations/sqlite/0002_model.sql for the commentary. Same tables and
-- keys; names bounded by the repository (decnet_core::repo::limits); binary collation so that
-- attacker-supplied text compares byte for byte.

CREATE TABLE deckies (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        VARCHAR(64)  NOT NULL,
    ip          VARCHAR(45)  NOT NULL,
    hostname    VARCHAR(255) NOT NULL,
    os_family   VARCHAR(64)  NOT NULL,
    archetype   VARCHAR(64)  NOT NULL,
    persona     MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    status      VARCHAR(64)  NOT NULL,
    updated_at  CHAR(30)     NOT NULL,
    UNIQUE KEY deckies_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE decky_services (
    decky       VARCHAR(64)  NOT NULL,
    service     VARCHAR(64)  NOT NULL,
    port        INT          NOT NULL,
    settings    MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    PRIMARY KEY (decky, service, port)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE events (
    id            BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ts            CHAR(30)      NOT NULL,
    decky         VARCHAR(64)   NOT NULL,
    service       VARCHAR(64)   NOT NULL,
    event_type    VARCHAR(64)   NOT NULL,
    attacker_ip   VARCHAR(45)   NULL,
    attacker_port INT           NULL,
    fields        MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    raw           MEDIUMBLOB    NOT NULL,
    dedup_key     BIGINT        NOT NULL,
    UNIQUE KEY events_dedup (ts, dedup_key),
    KEY events_attacker (attacker_ip, ts)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE attackers (
    id               BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ip               VARCHAR(45) NOT NULL,
    first_seen       CHAR(30)    NOT NULL,
    last_seen        CHAR(30)    NOT NULL,
    event_count      BIGINT      NOT NULL DEFAULT 0,
    session_count    BIGINT      NOT NULL DEFAULT 0,
    credential_count BIGINT      NOT NULL DEFAULT 0,
    flow_count       BIGINT      NOT NULL DEFAULT 0,
    updated_at       CHAR(30)    NOT NULL,
    UNIQUE KEY attackers_ip (ip),
    KEY attackers_last_seen (last_seen)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE attacker_touches (
    attacker_ip VARCHAR(45) NOT NULL,
    decky       VARCHAR(64) NOT NULL,
    service     VARCHAR(64) NOT NULL,
    first_seen  CHAR(30)    NOT NULL,
    last_seen   CHAR(30)    NOT NULL,
    PRIMARY KEY (attacker_ip, decky, service)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE fingerprints (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind        VARCHAR(64)   NOT NULL,
    value       VARCHAR(1024) NOT NULL,
    attacker_ip VARCHAR(45)   NOT NULL,
    first_seen  CHAR(30)      NOT NULL,
    last_seen   CHAR(30)      NOT NULL,
    count       BIGINT        NOT NULL,
    natural_key BINARY(32)    NOT NULL,
    UNIQUE KEY fingerprints_natural (natural_key),
    KEY fingerprints_attacker (attacker_ip)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE credentials (
    id               BIGINT         NOT NULL AUTO_INCREMENT PRIMARY KEY,
    attacker_ip      VARCHAR(45)    NOT NULL,
    decky            VARCHAR(64)    NOT NULL,
    service          VARCHAR(64)    NOT NULL,
    principal        BLOB           NOT NULL,
    secret_kind      VARCHAR(64)    NOT NULL,
    secret_hash      BLOB           NOT NULL,
    secret_printable VARCHAR(1024)  NOT NULL,
    attempts         BIGINT         NOT NULL,
    first_seen       CHAR(30)       NOT NULL,
    last_seen        CHAR(30)       NOT NULL,
    natural_key      BINARY(32)     NOT NULL,
    UNIQUE KEY credentials_natural (natural_key),
    KEY credentials_attacker (attacker_ip),
    KEY credentials_secret (secret_hash(32))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE sessions (
    id          BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    attacker_ip VARCHAR(45) NOT NULL,
    decky       VARCHAR(64) NOT NULL,
    service     VARCHAR(64) NOT NULL,
    started_at  CHAR(30)    NOT NULL,
    ended_at    CHAR(30)    NOT NULL,
    event_count BIGINT      NOT NULL,
    bytes       BIGINT      NOT NULL DEFAULT 0,
    commands    MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    closed      SMALLINT     NOT NULL DEFAULT 0,
    UNIQUE KEY sessions_natural (attacker_ip, decky, service, started_at),
    KEY sessions_started (started_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE attacker_profiles (
    attacker_ip    VARCHAR(45) NOT NULL PRIMARY KEY,
    behaviour      VARCHAR(64) NOT NULL,
    score          SMALLINT    NOT NULL,
    factors        MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    tools          MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    techniques     MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    evidence_until CHAR(30)    NOT NULL,
    computed_at    CHAR(30)    NOT NULL,
    CONSTRAINT attacker_profiles_score CHECK (score BETWEEN 0 AND 100)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE probe_results (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ts         CHAR(30)    NOT NULL,
    decky      VARCHAR(64) NOT NULL,
    service    VARCHAR(64) NOT NULL,
    check_name VARCHAR(64) NOT NULL,
    ok         SMALLINT     NOT NULL,
    detail     MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    UNIQUE KEY probe_results_natural (decky, service, check_name, ts)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE mutations (
    id      BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ts      CHAR(30)    NOT NULL,
    decky   VARCHAR(64) NOT NULL,
    kind    VARCHAR(64) NOT NULL,
    detail  MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    status  VARCHAR(64) NOT NULL,
    UNIQUE KEY mutations_natural (decky, kind, ts)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE users (
    id                   BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username             VARCHAR(255)  NOT NULL,
    password_hash        VARCHAR(255)  NOT NULL,
    role                 VARCHAR(16)   NOT NULL,
    must_change_password SMALLINT       NOT NULL DEFAULT 0,
    created_at           CHAR(30)      NOT NULL,
    updated_at           CHAR(30)      NOT NULL,
    UNIQUE KEY users_username (username),
    CONSTRAINT users_role CHECK (role IN ('admin', 'viewer'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE worker_leases (
    kind         VARCHAR(64)  NOT NULL,
    host         VARCHAR(255) NOT NULL,
    holder       VARCHAR(255) NOT NULL,
    pid          BIGINT       NOT NULL,
    acquired_at  CHAR(30)     NOT NULL,
    heartbeat_at CHAR(30)     NOT NULL,
    PRIMARY KEY (kind, host)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE worker_cursors (
    worker     VARCHAR(64)  NOT NULL,
    host       VARCHAR(255) NOT NULL,
    name       VARCHAR(64)  NOT NULL,
    position   BIGINT       NOT NULL,
    state      MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    updated_at CHAR(30)     NOT NULL,
    PRIMARY KEY (worker, host, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE worker_counters (
    worker     VARCHAR(64)  NOT NULL,
    host       VARCHAR(255) NOT NULL,
    name       VARCHAR(64)  NOT NULL,
    value      BIGINT       NOT NULL,
    updated_at CHAR(30)     NOT NULL,
    PRIMARY KEY (worker, host, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
