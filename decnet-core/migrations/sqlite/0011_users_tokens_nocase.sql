-- decnet web: usernames are unique regardless of case, and each user has a token generation
-- (tokens carry the generation they were issued at; a password change, reset, role change or
-- deletion bumps it, so revocation survives a restart).
--
-- Existing rows that differ from an older account only by case keep working under a new,
-- visible name: `<name>~<id>` (`~` cannot appear in a name created through the API), so no
-- account is silently merged or dropped; the older account keeps its name.
UPDATE users SET username = username || '~' || id
 WHERE EXISTS (SELECT 1 FROM users o WHERE lower(o.username) = lower(users.username) AND o.id < users.id);
ALTER TABLE users ADD COLUMN username_key TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
UPDATE users SET username_key = lower(username);
CREATE UNIQUE INDEX users_username_key ON users (username_key);
