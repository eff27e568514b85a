-- The correlator asks whether an attacker already tried a secret (credential reuse counts
-- distinct attackers per secret): by (secret_hash, attacker_ip) that is one index seek per pair
-- instead of reading every row of a popular secret. It serves lookups by secret alone too, so it
-- replaces credentials_secret.
CREATE INDEX credentials_secret_attacker ON credentials (secret_hash, attacker_ip);
DROP INDEX credentials_secret;
