"""One ingest worker process for the ingest benchmark: ``python -m bench.ingest_worker LEDGER PORT
GRID CLIENT_ID [GROUP]``. Prints ``ready`` once subscribed; ingests until SIGTERM, then prints
``stored N`` and the rejections (also counted in the ledger; the per-frame log is off)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from coordinator.config import Config
from coordinator.service.app import Runtime, build
from coordinator.service.mqtt import BrokerAddress
from protocol import crypto


async def work(ledger_path: str, port: int, grid: str, client_id: str, group: str | None) -> None:
    """An ingest-only coordinator (``coordinator run --ingest-only``), built by the composition root."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    cfg = Config(
        grid, Path(ledger_path), BrokerAddress("127.0.0.1", port), group=group, batch=500, flush_ms=50
    )
    key = crypto.SigningKey(bytes(32))  # an ingest worker signs nothing
    svc = build(cfg, Runtime(client_id=client_id, ingest_only=True, key=key))
    ready = svc.ingest.ready = asyncio.Event()
    try:
        task = asyncio.create_task(svc.run(stop))
        await ready.wait()
        print("ready", flush=True)
        await task
    finally:
        await svc.close()
    print(f"stored {svc.ingest.stored} rejected {dict(svc.ingest.ingest.rejected)}", flush=True)


def main(argv: list[str]) -> int:
    logging.getLogger("peergrid").setLevel(logging.ERROR)  # refusals are counted in the ledger
    group = argv[4] if len(argv) > 4 else None
    asyncio.run(work(argv[0], int(argv[1]), argv[2], argv[3], group))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
