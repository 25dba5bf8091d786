"""The peergrid coordinator: ingest, ledger, market, delivery, settlement, API (CPython, asyncio)."""

__version__ = "0.1.0"
