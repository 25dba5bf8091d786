"""The ``peergrid`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from coordinator import __version__
from coordinator.errors import CoordinatorError
from coordinator.mqtt import BrokerAddress


def _demo(args: argparse.Namespace) -> int:
    from coordinator import demo

    broker = BrokerAddress.parse(args.broker) if args.broker else None
    result = asyncio.run(demo.run(broker=broker, readings=args.readings, step_s=args.step))
    return 0 if result.ok and result.accepted == args.readings else 1


def _coordinator_run(args: argparse.Namespace) -> int:
    import signal

    from coordinator import config
    from coordinator.ingest_service import IngestService
    from coordinator.ledger import Ledger

    cfg = config.load(args.config)
    cfg.ledger.parent.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with Ledger.open(cfg.ledger) as ledger:
            svc = IngestService(
                ledger,
                cfg.grid,
                cfg.broker,
                batch=cfg.batch,
                flush_s=cfg.flush_ms / 1000,
                group=cfg.group,
                auto_enrol=cfg.auto_enrol,
                client_id=args.client_id or f"peergrid-{cfg.grid}",
            )
            print(
                f"peergrid coordinator: grid {cfg.grid!r}, ledger {cfg.ledger}, "
                f"broker {cfg.broker.host}:{cfg.broker.port}",
                flush=True,
            )
            await svc.run(stop)

    asyncio.run(main())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peergrid", description=__doc__)
    p.add_argument("--version", action="version", version=f"peergrid {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run an end-to-end round on the embedded broker")
    d.add_argument("--broker", metavar="HOST[:PORT]", help="use this MQTT broker (e.g. Mosquitto)")
    d.add_argument("--readings", type=int, default=12, help="readings the virtual board sends")
    d.add_argument("--step", type=int, default=600, help="simulated seconds between readings")
    d.set_defaults(func=_demo)

    c = sub.add_parser("coordinator", help="the coordinator service")
    csub = c.add_subparsers(dest="action", required=True)
    run = csub.add_parser("run", help="ingest readings into the ledger (until SIGTERM)")
    run.add_argument("--config", required=True, help="coordinator TOML file")
    run.add_argument("--client-id", help="MQTT client id (one per worker process)")
    run.set_defaults(func=_coordinator_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except CoordinatorError as e:
        print(f"peergrid: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
