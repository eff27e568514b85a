-- Issue 14: the sensor writes fingerprints. Each row now says how it was computed (the raw string
-- the method hashes, p0f's label, whether the input was cut short) and where it was seen (the decky
-- and its port). The natural key covers (kind, value, attacker_ip, decky, port).
ALTER TABLE fingerprints
    ADD COLUMN raw     MEDIUMTEXT   NULL,
    ADD COLUMN label   VARCHAR(1024) NULL,
    ADD COLUMN partial SMALLINT     NOT NULL DEFAULT 0,
    ADD COLUMN decky   VARCHAR(255) NOT NULL DEFAULT '',
    ADD COLUMN port    INT          NOT NULL DEFAULT 0;

-- The deckies' own fingerprints (their SYN-ACK, TLS/SSH server hellos): what the prober's realism
-- checks compare with the persona. Never mixed with attackers'.
CREATE TABLE decky_fingerprints (
    id          BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    decky       VARCHAR(255)  NOT NULL,
    port        INT           NOT NULL,
    kind        VARCHAR(64)   NOT NULL,
    value       VARCHAR(1024) NOT NULL,
    raw         MEDIUMTEXT    NULL,
    label       VARCHAR(1024) NULL,
    partial     SMALLINT      NOT NULL,
    first_seen  CHAR(30)      NOT NULL,
    last_seen   CHAR(30)      NOT NULL,
    count       BIGINT        NOT NULL,
    natural_key BINARY(32)    NOT NULL,
    UNIQUE KEY decky_fingerprints_natural (natural_key),
    KEY decky_fingerprints_decky (decky)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
