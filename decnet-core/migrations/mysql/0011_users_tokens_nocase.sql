-- decnet web: usernames are unique regardless of case, and each user has a token generation
-- (tokens carry the generation they were issued at; a password change, reset, role change or
-- deletion bumps it, so revocation survives a restart).
--
-- Existing rows that differ from an older account only by case keep working under a new,
-- visible name: `<name>~<id>` (`~` cannot appear in a name created through the API), so no
-- account is silently merged or dropped; the older account keeps its name.
UPDATE users u JOIN users o ON LOWER(o.username) = LOWER(u.username) AND o.id < u.id
   SET u.username = CONCAT(u.username, '~', u.id);
ALTER TABLE users
    ADD COLUMN username_key VARCHAR(255) NOT NULL DEFAULT '',
    ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
UPDATE users SET username_key = LOWER(username);
CREATE UNIQUE INDEX users_username_key ON users (username_key);
