-- Issue 12: the prober's realism results (see the SQLite migration of the same number).
DROP TABLE probe_results;

CREATE TABLE probe_results (
    id          BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    decky       VARCHAR(64)  NOT NULL,
    check_name  VARCHAR(64)  NOT NULL,
    subject     VARCHAR(128) NOT NULL,
    severity    VARCHAR(16)  NOT NULL,
    expected    TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    seen        TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    first_seen  CHAR(30)     NOT NULL,
    last_seen   CHAR(30)     NOT NULL,
    resolved_at CHAR(30)     NULL,
    UNIQUE KEY probe_results_natural (decky, check_name, subject),
    KEY probe_results_severity (severity, last_seen),
    CONSTRAINT probe_results_severity_values
        CHECK (severity IN ('pass', 'info', 'low', 'medium', 'high', 'critical'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE probe_vantages (
    ip         VARCHAR(45) NOT NULL PRIMARY KEY,
    name       VARCHAR(64) NOT NULL,
    updated_at CHAR(30)    NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
