"""The HTTP API (REST, pages, metrics), the wiring of every part, and the ``booking`` command."""
