-- The correlator reads an attacker's flows from a point in time on (where its open scan episode
-- starts): by (src_ip, first_seen) that costs the flows read, not every flow the source ever sent.
-- It also serves every lookup by source alone, so it replaces flows_src_ip.
CREATE INDEX flows_src_time ON flows (src_ip, first_seen);
DROP INDEX flows_src_ip;
