-- Verified identity at join: how buyers of an event prove who they are (JSON: kind,
-- issuer, audience, jwks_url, public_key; null: anybody may join), and how many seats
-- one person may hold or buy over all its orders (0: no limit).
ALTER TABLE events ADD COLUMN identity jsonb;
ALTER TABLE events ADD COLUMN max_per_person int NOT NULL DEFAULT 0;
-- The proof of work a join must bring at first (0: none); admins change it live in Redis.
ALTER TABLE events ADD COLUMN challenge_difficulty int NOT NULL DEFAULT 0;
