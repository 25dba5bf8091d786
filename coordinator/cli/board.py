"""``peergrid board ...`` and ``peergrid broker ...``: provisioning commands (coordinator/provision)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coordinator.provision.bundle import Broker


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
        release_key=_release_pub(args.release_key),
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


def _release_pub(text: str | None) -> bytes | None:
    if not text:
        print("peergrid: no --release-key: this board will refuse every update", file=sys.stderr)
        return None
    from coordinator.provision import update

    return update.release_public(text)


def _release_key(args: argparse.Namespace) -> int:
    from coordinator.provision import update

    pub = update.new_release_key(Path(args.out))
    print(f"release key {args.out} (keep it offline; boards trust it): public {pub.hex()}")
    print(f"public half in {args.out}.pub: peergrid board bundle ... --release-key {args.out}.pub")
    return 0


def _update(args: argparse.Namespace) -> int:
    import asyncio

    from coordinator.provision import update
    from coordinator.provision.errors import ProvisionError
    from coordinator.service.mqtt import BrokerAddress

    if args.bundle:
        img = update.from_bundle(Path(args.bundle))
    elif args.image and args.version and args.type:
        img = update.image(Path(args.image), args.version, args.type)
    else:
        raise ProvisionError("give --bundle, or --image with --version and --type")
    grid, addr = args.grid, BrokerAddress.parse(args.broker) if args.broker else None
    boards = list(args.board or [])
    if args.config:
        from coordinator import config

        cfg = config.load(args.config)
        grid, addr = cfg.grid, addr or cfg.broker
        if args.all:
            from coordinator.ledger import Ledger

            with Ledger.open(cfg.ledger) as ledger:
                boards = [b.board_id for b in ledger.boards("active") if b.board_type == img.board_type]
    elif args.all:
        raise ProvisionError("--all needs --config (the boards enrolled in its ledger)")
    if not grid or addr is None:
        raise ProvisionError("give --config, or --grid and --broker HOST:PORT")
    if not boards:
        raise ProvisionError(
            f"no boards to update (--board ID, or --all: active boards of type {img.board_type})"
        )
    key = update.load_release_key(Path(args.release_key))
    mans = [
        update.manifest(
            img, grid, b, key, min_fw=args.min_version or "", allow_downgrade=args.allow_downgrade
        )
        for b in boards
    ]
    n = asyncio.run(update.publish(addr, grid, img, mans))
    print(
        f"update {img.version} ({img.board_type}, {len(img.data)} bytes, sha256 {img.digest.hex()[:16]}) "
        f"published for {n} board(s)"
    )
    if args.wait:
        got = asyncio.run(update.follow(addr, grid, set(boards), img.version, args.wait))
        done = [b for b in boards if b in got and got[b].state == 3]
        print(f"{len(done)} of {len(boards)} confirmed {img.version}")
        return 0 if len(done) == len(boards) else 1
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


def _broker_for(args: argparse.Namespace, grid: str) -> Callable[[str], Broker]:
    """A board's broker settings from --broker-dir (TLS, its own credentials) or --broker."""
    from coordinator.provision import bundle
    from coordinator.provision.brokerconf import Site
    from coordinator.provision.errors import ProvisionError
    from coordinator.service.mqtt import BrokerAddress

    if args.broker_dir:
        site = Site(Path(args.broker_dir))
        if site.settings.grid != grid:
            raise ProvisionError(f"broker directory is for grid {site.settings.grid!r}, config for {grid!r}")
        ca = site.pki.ca_der()
        host = args.broker_host or site.settings.hosts[0]

        def secure(board: str) -> Broker:
            return bundle.Broker(host, site.settings.port, board, site.add_board(board), ca)

        return secure
    if args.broker:
        addr = BrokerAddress.parse(args.broker)
        return lambda board: bundle.Broker(host=addr.host, port=addr.port)
    raise ProvisionError("give --broker-dir (TLS and credentials) or --broker HOST:PORT (no security)")


def _provision(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.provision import fleet, pipeline, ports
    from coordinator.provision.errors import ProvisionError
    from protocol import crypto

    cfg = config.load(args.config)
    opts = pipeline.Options(
        image=Path(args.image) if args.image else None, new_key=args.new_key, wait_s=args.wait
    )
    if args.fleet:
        if not args.out:
            raise ProvisionError("a batch needs --out, the directory for the boards' bundles")
        assert cfg.key is not None
        batch = fleet.Batch(
            grid=cfg.grid,
            coordinator_key=crypto.SigningKey(config.load_key(cfg.key)).public,
            ledger=str(cfg.ledger),
            out=Path(args.out),
            broker=_broker_for(args, cfg.grid),
            arch=args.arch,
            romfs=args.romfs,
            opts=opts,
            reload=args.broker_reload,
            plug_timeout_s=args.plug_timeout,
        )
        wifi = Path(args.wifi_profiles) if args.wifi_profiles else None
        results = fleet.run(fleet.load(Path(args.fleet), wifi), batch, ports.Watcher(given=args.port or []))
        print(fleet.table(results))
        return 1 if any(r.status == "failed" for r in results) else 0
    if not args.bundle or not args.member:
        raise ProvisionError("give --bundle and --member (one board) or --fleet (a batch)")
    port = args.port[0] if args.port else ports.find().device
    o = pipeline.provision(
        Path(args.bundle),
        port,
        enrolment=pipeline.Enrolment(str(cfg.ledger), args.member),
        opts=opts,
        say=lambda msg: print(msg, flush=True),
    )
    print(f"board {o.board}: ok, key {o.pubkey.hex()}, first reading seq {o.first_seq}")
    return 0


def _run_virtual(args: argparse.Namespace) -> int:
    from coordinator.provision import flash, virtual

    bundle_dir = Path(args.bundle)
    board_dir = Path(args.dir) if args.dir else bundle_dir
    res = flash.flash_unix(bundle_dir, board_dir, new_key=args.new_key)
    state = "generated on first boot" if res.created else "kept from before"
    print(f"virtual board in {board_dir}: public key {res.pubkey.hex()} ({state})", flush=True)
    if args.config and args.member:
        import json

        from coordinator import config
        from coordinator.provision import pipeline

        cfg = config.load(args.config)
        man = json.loads((bundle_dir / "MANIFEST.json").read_text())
        enrolment = pipeline.Enrolment(str(cfg.ledger), args.member)
        msg, _ = pipeline.enrol_key(enrolment, str(man["board"]), str(man["board_type"]), res.pubkey)
        print(msg, flush=True)
    return virtual.run(board_dir, power_w=args.power, seconds=args.seconds, heap=args.heap)


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
            _revoke(args.broker_dir or cfg.broker_dir, args.old)
    return 0


def _revoke(broker_dir: str | Path | None, board: str) -> None:
    """Revoke a retired or replaced board's broker credentials (``--broker-dir``, else the config's
    ``[broker] dir``); say so loudly when there is no broker directory to revoke them in."""
    if not broker_dir:
        print(
            f"peergrid: broker credentials of {board} NOT revoked: no broker directory "
            "(give --broker-dir or set [broker] dir)",
            file=sys.stderr,
        )
        return
    from coordinator.provision.brokerconf import Site

    if Site(Path(broker_dir)).revoke(board):
        print(f"broker credentials of {board} revoked: reload Mosquitto")
    else:
        print(f"broker credentials of {board}: none to revoke in {broker_dir}")


def _retire(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.ledger import Ledger
    from coordinator.provision import enrol

    cfg = config.load(args.config)
    with Ledger.open(cfg.ledger) as ledger:
        print(enrol.retire(ledger, args.board))
    _revoke(args.broker_dir or cfg.broker_dir, args.board)
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
    bb.add_argument(
        "--release-key", help="the release key's public half (.pub file or hex): updates it signs"
    )
    bb.set_defaults(func=_bundle)

    brk = bsub.add_parser("release-key", help="create the operator's release key that signs board updates")
    brk.add_argument("--out", required=True, help="key file (0600; keep it offline), public half in OUT.pub")
    brk.set_defaults(func=_release_key)

    bu = bsub.add_parser("update", help="signed over-the-air update of boards' code (one, a list, or all)")
    bu.add_argument("--bundle", help="a bundle built with --romfs: its romfs.img, version and board type")
    bu.add_argument("--image", help="a ROMFS image (with --version and --type)")
    bu.add_argument("--version", help="the image's firmware version (major.minor.patch)")
    bu.add_argument("--type", help="the board type the image is built for")
    bu.add_argument("--release-key", required=True, help="the release key file (peergrid board release-key)")
    bu.add_argument("--board", action="append", help="a board id (repeat for a list)")
    bu.add_argument("--all", action="store_true", help="every active board of the image's type (--config)")
    bu.add_argument("--config", help="coordinator TOML: grid, broker, ledger (for --all)")
    bu.add_argument("--grid", help="without --config: the grid id")
    bu.add_argument("--broker", metavar="HOST:PORT", help="the broker (default: the config's)")
    bu.add_argument("--min-version", help="boards running older firmware refuse the update")
    bu.add_argument("--allow-downgrade", action="store_true", help="let an older version replace a newer one")
    bu.add_argument("--wait", type=float, default=0, help="follow the boards' reports for this many seconds")
    bu.set_defaults(func=_update)

    bf = bsub.add_parser("flash", help="copy a bundle to a board and read its public key")
    bf.add_argument("--bundle", required=True)
    bf.add_argument(
        "--port", required=True, help="serial port (/dev/ttyUSB0) or unix:DIR (MicroPython unix port)"
    )
    bf.add_argument("--new-key", action="store_true", help="delete the board's key first (key rotation)")
    bf.set_defaults(func=_flash)

    bp = bsub.add_parser(
        "provision",
        help="one board or a batch: port, chip, MicroPython, copy, verify, key, enrol, first reading",
    )
    bp.add_argument("--config", required=True, help="the site's coordinator TOML (its ledger, grid, key)")
    bp.add_argument("--bundle", help="one board: its bundle (peergrid board bundle)")
    bp.add_argument("--member", help="one board: the member it is enrolled for")
    bp.add_argument("--fleet", help="a batch: CSV (id,member,board,wifi) or TOML of boards")
    bp.add_argument("--wifi-profiles", help="a batch: TOML of [wifi.NAME] profiles (ssid, password_env)")
    bp.add_argument("--out", help="a batch: directory for the boards' bundles (one per board id)")
    bp.add_argument("--broker-dir", help="a batch: broker directory (TLS, per-board credentials)")
    bp.add_argument("--broker-host", help="a batch: broker host as boards see it")
    bp.add_argument("--broker", metavar="HOST:PORT", help="a batch: plain MQTT without credentials")
    bp.add_argument(
        "--broker-reload", help="a batch: command that reloads the broker (e.g. 'systemctl reload mosquitto')"
    )
    bp.add_argument("--arch", help="a batch: mpy-cross -march (default from the board's mcu)")
    bp.add_argument("--romfs", action="store_true", help="a batch: code in a ROMFS image (no PSRAM needed)")
    bp.add_argument(
        "--port",
        action="append",
        help="serial port (default: the ESP32 USB bridge plugged in); a batch: repeat, one per board",
    )
    bp.add_argument("--image", help="MicroPython image (.bin) installed with esptool when a board needs it")
    bp.add_argument("--new-key", action="store_true", help="delete the board's key first (key rotation)")
    bp.add_argument("--wait", type=float, default=180.0, help="seconds to wait for the first reading")
    bp.add_argument("--plug-timeout", type=float, default=600.0, help="seconds to wait for the next board")
    bp.set_defaults(func=_provision)

    bv = bsub.add_parser(
        "run-virtual", help="a board without hardware: the firmware on the MicroPython unix port"
    )
    bv.add_argument("--bundle", required=True, help="a bundle built with --arch x64")
    bv.add_argument("--dir", help="the board's filesystem (default: the bundle directory)")
    bv.add_argument("--config", help="enrol its key in this site's ledger (with --member)")
    bv.add_argument("--member")
    bv.add_argument("--power", type=int, default=800, help="W the fake meter measures (+ import)")
    bv.add_argument("--seconds", type=int, help="stop after this many seconds (default: run until Ctrl-C)")
    bv.add_argument("--heap", help="MicroPython heap (default 128k with a ROMFS image, else 256k)")
    bv.add_argument("--new-key", action="store_true", help="delete the board's key first")
    bv.set_defaults(func=_run_virtual)

    be = bsub.add_parser("enroll", help="register a flashed board's public key for a member")
    be.add_argument("--member", required=True)
    bk = bsub.add_parser("rotate-key", help="a board's new key; old keys kept for verification")
    br = bsub.add_parser("replace", help="a new board takes over a member's old board (retired, kept)")
    br.add_argument("--old", required=True)
    br.add_argument("--new", required=True)
    br.add_argument("--broker-dir", help="revoke the old board's credentials here (default: [broker] dir)")
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
    bt.add_argument("--broker-dir", help="where to revoke its broker credentials (default: [broker] dir)")
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


