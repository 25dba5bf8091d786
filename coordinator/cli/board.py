"""``peergrid board ...`` and ``peergrid broker ...``: provisioning commands (coordinator/provision)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def _bundle(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.provision import bundle
    from coordinator.provision.brokerconf import Site
    from coordinator.provision.errors import ProvisionError
    from coordinator.service.mqtt import BrokerAddress
    from protocol import crypto

    cfg = config.load(args.config)
    assert cfg.key is not None
    coord = crypto.SigningKey(config.load_key(cfg.key)).public
    if args.broker_dir:
        site = Site(Path(args.broker_dir))
        if site.settings.grid != cfg.grid:
            raise ProvisionError(
                f"broker directory is for grid {site.settings.grid!r}, config for {cfg.grid!r}"
            )
        broker = bundle.Broker(
            host=args.broker_host or site.settings.hosts[0],
            port=site.settings.port,
            username=args.id,
            password=site.add_board(args.id),
            ca_der=site.pki.ca_der(),
        )
    elif args.broker:
        addr = BrokerAddress.parse(args.broker)
        broker = bundle.Broker(host=addr.host, port=addr.port)
    else:
        raise ProvisionError("give --broker-dir (TLS and credentials) or --broker HOST:PORT (no security)")
    inp = bundle.Inputs(
        board_id=args.id,
        board_file=bundle.board_file(args.board),
        grid=cfg.grid,
        coordinator_key=coord,
        broker=broker,
        wifi_ssid=args.wifi_ssid,
        wifi_password=args.wifi_password or os.environ.get("PEERGRID_WIFI_PASSWORD"),
        arch=args.arch,
        romfs=args.romfs,
    )
    out = Path(args.out)
    man = bundle.build(inp, out)
    files = man["files"]
    assert isinstance(files, dict)
    print(
        f"bundle {out}: board {args.id} ({man['board_type']}, {man['arch']}), {len(files)} files, "
        f"sha256 {bundle.digest(out)}"
    )
    if args.broker_dir:
        print(f"broker credentials for {args.id} added: reload Mosquitto (systemctl reload mosquitto)")
    return 0


def _flash(args: argparse.Namespace) -> int:
    from coordinator.provision import flash

    res = flash.flash(Path(args.bundle), args.port, new_key=args.new_key)
    import json

    board = json.loads((Path(args.bundle) / "settings.json").read_text())["board"]
    state = "generated on first boot" if res.created else "kept from before"
    print(f"board {board}: public key {res.pubkey.hex()} ({state})")
    verb = "rotate-key" if args.new_key else "enroll"
    extra = "" if args.new_key else " --member MEMBER"
    print(
        f"next: peergrid board {verb} --config SITE.toml --board {board}{extra} --pubkey {res.pubkey.hex()}"
    )
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.ledger import Ledger
    from coordinator.provision import enrol

    cfg = config.load(args.config)
    key = enrol.parse_pubkey(args.pubkey)
    with Ledger.open(cfg.ledger) as ledger:
        now = int(time.time())
        if args.action == "enroll":
            print(enrol.enrol(ledger, args.board, args.member, key, args.type, now=now))
        elif args.action == "rotate-key":
            print(enrol.rotate_key(ledger, args.board, key, now=now))
        else:
            print(enrol.replace(ledger, args.old, args.new, key, args.type, now=now))
            _revoke(args.broker_dir, args.old)
    return 0


def _revoke(broker_dir: str | None, board: str) -> None:
    if broker_dir:
        from coordinator.provision.brokerconf import Site

        if Site(Path(broker_dir)).revoke(board):
            print(f"broker credentials of {board} revoked: reload Mosquitto")


def _retire(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.ledger import Ledger
    from coordinator.provision import enrol

    cfg = config.load(args.config)
    with Ledger.open(cfg.ledger) as ledger:
        print(enrol.retire(ledger, args.board))
    _revoke(args.broker_dir, args.board)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.ledger import Ledger
    from coordinator.provision import enrol
    from coordinator.provision.errors import ProvisionError

    cfg = config.load(args.config)
    with Ledger.open(cfg.ledger) as ledger:
        b = enrol.find(ledger, args.board)
        if b is None:
            raise ProvisionError(f"no board {args.board!r}")
        print(f"board {b.board_id} {b.status} member {b.member_id or '-'} type {b.board_type}")
        for key, lo, hi in ledger.keys_of(args.board):
            print(f"  key {key.hex()} from {lo} to {hi if hi is not None else 'now'}")
    return 0


def _broker(args: argparse.Namespace) -> int:
    from coordinator.provision.brokerconf import Site, SiteSettings
    from coordinator.provision.errors import ProvisionError

    d = Path(args.dir)
    if args.action == "init":
        if (d / "site.json").exists():
            raise ProvisionError(f"{d} is already set up; `peergrid broker config` regenerates its files")
        site = Site.init(
            d,
            SiteSettings(
                grid=args.grid,
                hosts=tuple(args.host),
                port=args.port,
                local_port=args.local_port,
                max_inflight=args.max_inflight,
                max_queued=args.max_queued,
            ),
        )
    else:
        site = Site(d)
        if args.action == "add-board":
            site.add_board(args.board)
        elif args.action == "add-hass":
            user, _ = site.add_hass(args.name, args.board)
            print(f"Home Assistant: user {user}, password in {d / 'secrets' / (user + '.password')}")
        elif args.action == "revoke":
            if not site.revoke(args.board):
                raise ProvisionError(f"{args.board!r} has no broker credentials here")
        site.render()
    print(f"{d}: grid {site.settings.grid}, users {', '.join(site.users())}")
    print(
        f"Mosquitto: include {d / 'mosquitto.conf'} (e.g. copy to /etc/mosquitto/conf.d/peergrid.conf), "
        "then systemctl reload mosquitto"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``board`` and ``broker`` commands to the ``peergrid`` parser."""
    b = sub.add_parser("board", help="build, flash, enrol, re-key and replace meter boards")
    bsub = b.add_subparsers(dest="action", required=True)

    bb = bsub.add_parser("bundle", help="build a board's filesystem image (reproducible)")
    bb.add_argument("--board", required=True, help="board type in boards/ or a board file path")
    bb.add_argument("--id", required=True, help="the board id (its MQTT user name and topic level)")
    bb.add_argument("--config", required=True, help="coordinator TOML (grid, coordinator key)")
    bb.add_argument("--out", required=True, help="output directory (empty, or an earlier bundle)")
    bb.add_argument("--broker-dir", help="broker directory from `peergrid broker init` (TLS, credentials)")
    bb.add_argument(
        "--broker-host", help="broker host as the board sees it (default: the certificate's first)"
    )
    bb.add_argument("--broker", metavar="HOST:PORT", help="plain MQTT without credentials (test benches)")
    bb.add_argument("--wifi-ssid")
    bb.add_argument("--wifi-password", help="or the environment variable PEERGRID_WIFI_PASSWORD")
    bb.add_argument("--arch", help="mpy-cross -march (default from the board's mcu; x64 for the unix port)")
    bb.add_argument(
        "--romfs",
        action="store_true",
        help="code in romfs.img for a ROMFS partition (runs from flash, no heap)",
    )
    bb.set_defaults(func=_bundle)

    bf = bsub.add_parser("flash", help="copy a bundle to a board and read its public key")
    bf.add_argument("--bundle", required=True)
    bf.add_argument(
        "--port", required=True, help="serial port (/dev/ttyUSB0) or unix:DIR (MicroPython unix port)"
    )
    bf.add_argument("--new-key", action="store_true", help="delete the board's key first (key rotation)")
    bf.set_defaults(func=_flash)

    be = bsub.add_parser("enroll", help="register a flashed board's public key for a member")
    be.add_argument("--member", required=True)
    bk = bsub.add_parser("rotate-key", help="a board's new key; old keys kept for verification")
    br = bsub.add_parser("replace", help="a new board takes over a member's old board (retired, kept)")
    br.add_argument("--old", required=True)
    br.add_argument("--new", required=True)
    br.add_argument("--broker-dir", help="also revoke the old board's broker credentials")
    for x in (be, bk, br):
        x.add_argument("--config", required=True)
        x.add_argument("--pubkey", required=True, help="the key the board printed (64 hex digits)")
        x.set_defaults(func=_enroll)
    for x in (be, bk):
        x.add_argument("--board", required=True)
    for x in (be, br):
        x.add_argument(
            "--type", default=None if x is br else "esp32", help="board type recorded in the ledger"
        )
    bt = bsub.add_parser(
        "retire", help="retire a board (leaving, or moving to another member under a new id); history kept"
    )
    bt.add_argument("--config", required=True)
    bt.add_argument("--board", required=True)
    bt.add_argument("--broker-dir", help="also revoke the board's broker credentials")
    bt.set_defaults(func=_retire)
    bl = bsub.add_parser("keys", help="a board's status and every key it has had")
    bl.add_argument("--config", required=True)
    bl.add_argument("--board", required=True)
    bl.set_defaults(func=_keys)

    m = sub.add_parser("broker", help="Mosquitto security: CA, TLS, per-board credentials and ACLs")
    msub = m.add_subparsers(dest="action", required=True)
    mi = msub.add_parser("init", help="create the CA, server certificate, coordinator credentials, config")
    mi.add_argument("--grid", required=True)
    mi.add_argument(
        "--host",
        action="append",
        required=True,
        help="broker name or address boards use (repeat; the first goes into bundles)",
    )
    mi.add_argument("--port", type=int, default=8883, help="TLS listener for boards")
    mi.add_argument("--local-port", type=int, default=1883, help="loopback listener for the coordinator")
    mi.add_argument("--max-inflight", type=int, default=1000, help="at least the coordinator's ingest.batch")
    mi.add_argument("--max-queued", type=int, default=100_000)
    mc = msub.add_parser("config", help="regenerate passwd, acl and mosquitto.conf")
    ma = msub.add_parser("add-board", help="create a board's credentials (bundle does this)")
    mr = msub.add_parser("revoke", help="remove a board's credentials")
    mh = msub.add_parser("add-hass", help="credentials for a member's Home Assistant (reads its boards only)")
    mh.add_argument("--name", required=True, help="user hass-<name>, e.g. the member id")
    mh.add_argument("--board", action="append", required=True, help="a board it may read (repeat)")
    for x in (ma, mr):
        x.add_argument("--board", required=True)
    for x in (mi, mc, ma, mr, mh):
        x.add_argument("--dir", required=True, help="broker directory, e.g. /etc/peergrid/broker")
        x.set_defaults(func=_broker)


