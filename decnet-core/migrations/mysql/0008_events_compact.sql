-- events, compact (issue 16); see the SQLite migration of the same number.
-- - ts is Unix epoch nanoseconds (BIGINT), converted from the canonical text
--   (YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ) without the session time zone.
-- - fields may be NULL: derived from raw when read.
CREATE TABLE events_v8 (
    id            BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    ts            BIGINT        NOT NULL,
    decky         VARCHAR(64)   NOT NULL,
    service       VARCHAR(64)   NOT NULL,
    event_type    VARCHAR(64)   NOT NULL,
    attacker_ip   VARCHAR(45)   NULL,
    attacker_port INT           NULL,
    fields        MEDIUMTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL,
    raw           MEDIUMBLOB    NOT NULL,
    dedup_key     BIGINT        NOT NULL,
    UNIQUE KEY events_dedup (ts, dedup_key),
    KEY events_attacker (attacker_ip, ts)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO events_v8 (id, ts, decky, service, event_type, attacker_ip, attacker_port, fields,
                       raw, dedup_key)
SELECT id,
       CAST(TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00',
                          STR_TO_DATE(LEFT(ts, 19), '%Y-%m-%dT%H:%i:%s')) AS SIGNED) * 1000000000
           + CAST(SUBSTRING(ts, 21, 9) AS SIGNED),
       decky, service, event_type, attacker_ip, attacker_port, fields, raw, dedup_key
FROM events;
DROP TABLE events;
RENAME TABLE events_v8 TO events;
