"""The waiting room's WebSocket channel: protocol, sessions, per-event fan-out, server."""
