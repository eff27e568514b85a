-- The mutator (issue 13). `fleet_generations`: the desired fleet of a deployment, one row per
-- change (the generation is the id); `decnet deploy` applies the newest and records the
-- outcome. `mutation_requests`: the operator's queue (API → mutator), claimed and answered.
CREATE TABLE fleet_generations (
    id          BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    bridge      VARCHAR(64) NOT NULL,
    fleet       MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    file_fleet  MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    restart     MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    cause       VARCHAR(64) NOT NULL,
    actor       VARCHAR(255) NOT NULL,
    request_id  BIGINT,
    status      VARCHAR(64) NOT NULL,
    reason      TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    created_at  CHAR(30)    NOT NULL,
    applied_at  CHAR(30),
    UNIQUE KEY fleet_generations_request (request_id),
    KEY fleet_generations_bridge (bridge, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE mutation_requests (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    decky         VARCHAR(64)  NOT NULL,
    action        VARCHAR(64)  NOT NULL,
    args          TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    requested_by  VARCHAR(255) NOT NULL,
    requested_at  CHAR(30)     NOT NULL,
    status        VARCHAR(64)  NOT NULL,
    claimed_by    VARCHAR(255) NOT NULL,
    reason        TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    updated_at    CHAR(30)     NOT NULL,
    KEY mutation_requests_status (status, id),
    KEY mutation_requests_decky (decky, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
