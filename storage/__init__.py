"""Access to the outside world: Redis, PostgreSQL, and the loop bridge between them and trio.

Nothing outside this package imports ``redis``, ``asyncpg`` or ``trio_asyncio``.
"""
