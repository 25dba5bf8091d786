"""One ingest worker process for the ingest benchmark: ``python -m bench.ingest_worker LEDGER PORT
GRID CLIENT_ID [GROUP]``. Prints ``ready`` once subscribed; ingests until SIGTERM, then prints
``stored N`` and the rejections (also counted in the ledger; the per-frame log is off)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from coordinator.ledger import Ledger
from coordinator.service.mqtt import BrokerAddress
from coordinator.transaction.ingest_service import IngestService


async def work(ledger_path: str, port: int, grid: str, client_id: str, group: str | None) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    ready = asyncio.Event()
    with Ledger.open(ledger_path) as led:
        svc = IngestService(
            led,
            grid,
            BrokerAddress("127.0.0.1", port),
            client_id=client_id,
            group=group,
            batch=500,
            flush_s=0.05,
            ready=ready,
        )
        task = asyncio.create_task(svc.run(stop))
        await ready.wait()
        print("ready", flush=True)
        await task
        print(f"stored {svc.stored} rejected {dict(svc.ingest.rejected)}", flush=True)


def main(argv: list[str]) -> int:
    logging.getLogger("peergrid").setLevel(logging.ERROR)  # refusals are counted in the ledger
    group = argv[4] if len(argv) > 4 else None
    asyncio.run(work(argv[0], int(argv[1]), argv[2], argv[3], group))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
