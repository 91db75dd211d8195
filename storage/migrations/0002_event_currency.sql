-- The currency an event's prices are in (ISO 4217); events made before it sell in euros.
ALTER TABLE events ADD COLUMN currency text NOT NULL DEFAULT 'EUR';

-- The newest events first, for the list of events.
CREATE INDEX events_created_at ON events (created_at DESC);
