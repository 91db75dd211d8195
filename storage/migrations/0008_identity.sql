-- Verified identity at join: how buyers of an event prove who they are (JSON: kind,
-- issuer, audience, jwks_url, public_key; null: anybody may join), and how many seats
-- one person may hold or buy over all its orders (0: no limit).
ALTER TABLE events ADD COLUMN identity jsonb;
ALTER TABLE events ADD COLUMN max_per_person int NOT NULL DEFAULT 0;
