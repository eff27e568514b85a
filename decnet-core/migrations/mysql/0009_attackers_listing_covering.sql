-- The API lists attackers newest activity first (`ORDER BY last_seen DESC, id DESC`) or busiest
-- first (`ORDER BY event_count DESC, id DESC`), 50 rows a page. With every listed column in the
-- index, a page is one index range read instead of a primary-key lookup per row. They serve
-- every query the narrow indexes served (same leading column), so they replace them.
CREATE INDEX attackers_last_seen_listing ON attackers
    (last_seen, id, ip, first_seen, event_count, session_count, credential_count, flow_count);
DROP INDEX attackers_last_seen ON attackers;
CREATE INDEX attackers_events_listing ON attackers
    (event_count, id, ip, first_seen, last_seen, session_count, credential_count, flow_count);
DROP INDEX attackers_events ON attackers;
