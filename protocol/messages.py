"""Message types of the wire: stable numeric ids, a direction, and typed, range-checked fields.

A message body is the canonical msgpack array ``[type_id, version, field1, field2, ...]`` with
the fields in the order declared here. Units are integers throughout: energy in mWh, power in W
(positive = import from the grid or charging), voltage in mV, state of charge in per-mille,
current in mA, prices in milli-cent per kWh, times in Unix seconds (UTC).

Ids and directions never change once released; a new field means a new ``VERSION``.
Runs unchanged on CPython and MicroPython.
"""

import sys

from protocol import codec
from protocol.errors import DecodeError, FieldError, UnknownTypeError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[no-untyped-def]
        return x


# True for mypy only (pyproject: always_true). A const: a board's compiler drops `if TYPING:`
# blocks whole, so the names they import cost no heap there.
TYPING = const(0)
if TYPING:
    from typing import Any

    Field = tuple[str, int, int, int]

VERSION = 1

# directions
UP = 1  # board -> coordinator, signed by the board
DOWN = 2  # coordinator -> one board, signed by the coordinator
BROADCAST = 3  # coordinator -> every board of a grid, signed by the coordinator

# field kinds
UINT = 0  # integer lo..hi (lo >= 0)
INT = 1  # signed integer lo..hi
ID = 2  # identifier: 1-32 chars of [a-z0-9_-], starting with a letter or digit
BYTES = 3  # binary of exactly ``lo`` bytes
TEXT = 4  # printable ASCII, at most ``hi`` characters
OPT = 0x10  # flag: the field may be None (nil on the wire)

U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
MAX_W = 10_000_000  # 10 MW: any single connection of a microgrid
MAX_TS = 0xFFFFFFFF  # Unix seconds until 2106

ID_MAX = 32

# Field types used in the SPEC strings below: name -> (kind, lo, hi). A trailing "?" in a SPEC
# makes the field optional (nil on the wire). Specs are strings so that on a board they stay in
# flash with the code: a table of tuples per field would cost several KB of heap.
TYPES_OF_FIELDS = {
    "id": (ID, 0, 0),
    "u8": (UINT, 0, 0xFF),
    "u16": (UINT, 0, 0xFFFF),
    "u32": (UINT, 0, U32),
    "u64": (UINT, 0, U64),
    "ts": (UINT, 0, MAX_TS),
    "w": (INT, -MAX_W, MAX_W),  # power, W, signed
    "wp": (UINT, 0, MAX_W),  # power, W, >= 0
    "mv": (UINT, 0, 1_000_000),  # voltage, mV
    "pm": (UINT, 0, 1000),  # per-mille
    "n2": (UINT, 0, 2),
    "n3": (UINT, 0, 3),
    "ma": (UINT, 0, 80_000),  # current, mA
    "len": (UINT, 1, 86_400),  # seconds
    "price": (INT, -10_000_000, 10_000_000),  # milli-cent per kWh
    "key": (BYTES, 32, 32),
    "t24": (TEXT, 0, 24),
    "t48": (TEXT, 0, 48),
}

# order/ack status codes
ST_APPLIED = 0  # setpoints applied as ordered
ST_CLAMPED = 1  # applied, limited by the board's local limits
ST_REJECTED = 2  # not applied; ``reason`` says why
ST_FAILSAFE = 3  # board fell back to its safe defaults (no valid order in time)

# board states in Status
S_OFFLINE = 0
S_ONLINE = 1
S_FAILSAFE = 2
S_SAFE_MODE = 3  # after repeated failed boots: meters and reports, sends no readings, takes no orders

# update states in UpdateState (over-the-air updates, firmware/ota.py)
U_REFUSED = 0  # the manifest or the image was refused; ``reason`` says why, the old code runs on
U_DOWNLOADING = 1  # accepted; ``got`` bytes of the image are in the inactive slot
U_PENDING = 2  # verified and switched to: the board restarts into it (a trial until confirmed)
U_CONFIRMED = 3  # the new code reconnected and had a reading acknowledged: it stays
U_ROLLED_BACK = 4  # the new code never confirmed itself: the board went back to ``fw``

# reading flags
F_CLOCK_UNSYNCED = 1  # board clock not yet set from NTP
F_REPLAYED = 2  # sent from the store-and-forward queue
F_ALIGNED = 4  # registers were aligned to the utility meter since the last reading
F_FRONTEND_FAULT = 8  # metering front end did not answer; registers held


def id_ok(s: object) -> bool:
    """True when ``s`` is a valid board or grid identifier (also safe as an MQTT topic level)."""
    if not isinstance(s, str) or not 1 <= len(s) <= ID_MAX:
        return False
    for i, c in enumerate(s):
        if not ("a" <= c <= "z" or "0" <= c <= "9" or (i > 0 and c in "_-")):
            return False
    return True


_CACHE: "dict[type, list[Field]]" = {}
_CACHING = sys.implementation.name != "micropython"


def fields(cls: "type[Message]") -> "list[Field]":
    """The fields of a message type, in wire order: (name, kind [| OPT], lo, hi)."""
    got = _CACHE.get(cls) if _CACHING else None
    if got is not None:
        return got
    out = []
    for item in cls.SPEC.split():
        name, _, t = item.partition(":")
        opt = t[-1] == "?"
        kind, lo, hi = TYPES_OF_FIELDS[t[:-1] if opt else t]
        out.append((name, kind | OPT if opt else kind, lo, hi))
    if _CACHING:  # the coordinator decodes thousands per second; a board keeps its heap
        _CACHE[cls] = out
    return out


def names(cls: "type[Message]") -> "list[str]":
    return [f[0] for f in fields(cls)]


def _check(cls: type, f: "Field", v: object) -> None:
    name, kind, lo, hi = f
    if v is None:
        if kind & OPT:
            return
        raise FieldError("%s.%s is required" % (cls.__name__, name))
    k = kind & 0x0F
    if k == UINT or k == INT:
        if type(v) is not int:
            raise FieldError("%s.%s must be an integer, not %s" % (cls.__name__, name, type(v).__name__))
        if v < lo or v > hi:
            raise FieldError("%s.%s=%d is outside %d..%d" % (cls.__name__, name, v, lo, hi))
    elif k == ID:
        if not id_ok(v):
            raise FieldError("%s.%s=%r is not an identifier ([a-z0-9_-], 1-32)" % (cls.__name__, name, v))
    elif k == BYTES:
        if not isinstance(v, bytes) or len(v) != lo:
            raise FieldError("%s.%s must be %d bytes" % (cls.__name__, name, lo))
    elif k == TEXT:
        if not isinstance(v, str) or len(v) > hi:
            raise FieldError("%s.%s must be text of at most %d characters" % (cls.__name__, name, hi))
        for c in v:
            if not " " <= c <= "~":
                raise FieldError("%s.%s must be printable ASCII" % (cls.__name__, name))


class Message:
    """Base of every message. Fields are set from keywords and checked on construction."""

    TYPE = 0
    LEAF = ""
    DIR = 0
    SPEC = ""  # "name:type name:type? ..." (see TYPES_OF_FIELDS)

    def __init__(self, **kw: "Any") -> None:
        for f in fields(type(self)):
            v = kw.pop(f[0], None)
            _check(type(self), f, v)
            setattr(self, f[0], v)
        if kw:
            raise FieldError("%s has no field(s) %s" % (type(self).__name__, ", ".join(sorted(kw))))

    def to_list(self) -> list[object]:
        """The body array: ``[TYPE, VERSION, field1, ...]``."""
        out: list[object] = [self.TYPE, VERSION]
        for name in names(type(self)):
            out.append(getattr(self, name))
        return out

    def encode(self) -> bytes:
        """Canonical msgpack bytes of the body."""
        return codec.pack(self.to_list())

    def values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in names(type(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and type(other) is type(self) and other.values() == self.values()

    def __hash__(self) -> int:
        return hash((self.TYPE, self.values()))

    def __repr__(self) -> str:
        parts = ["%s=%r" % (n, getattr(self, n)) for n in names(type(self))]
        return "%s(%s)" % (type(self).__name__, ", ".join(parts))


class Reading(Message):
    """A signed meter reading: cumulative registers (never run backwards) and instantaneous values."""

    TYPE = 1
    LEAF = "reading"
    DIR = UP
    # seq: persisted across reboot, +1 per reading
    # e_imp: cumulative import register, mWh (OBIS 1.8.0)
    # e_exp: cumulative export register, mWh (OBIS 2.8.0)
    # p: active power, W, + import / - export
    # u: voltage, mV
    # bat_soc: battery state of charge, per-mille
    # bat_p: battery power, W, + charging
    # ev_state: 0 unplugged, 1 plugged, 2 charging, 3 full
    # ev_p: EV charging power, W
    # flags: F_* bits
    SPEC = (
        "board:id seq:u32 ts:ts e_imp:u64 e_exp:u64 p:w u:mv bat_soc:pm? bat_p:w? "
        "ev_state:n3? ev_p:wp? flags:u16"
    )
    board: str
    seq: int
    ts: int
    e_imp: int
    e_exp: int
    p: int
    u: int
    bat_soc: "int | None"
    bat_p: "int | None"
    ev_state: "int | None"
    ev_p: "int | None"
    flags: int


class Order(Message):
    """Setpoints for one interval. A None setpoint leaves that actuator to the board's defaults."""

    TYPE = 2
    LEAF = "order"
    DIR = DOWN
    # oseq: per-board order sequence, strictly increasing
    # interval: start of the market interval
    # bat_w: battery setpoint, W, + charge / - discharge
    # ev_ma: EV charging current limit, mA
    # pv_limit_w: PV export limit, W
    # relay_mask: which relays this order sets
    # relay_state: their states (bit = on)
    SPEC = (
        "board:id oseq:u32 interval:ts valid_from:ts valid_until:ts bat_w:w? ev_ma:ma? "
        "pv_limit_w:wp? relay_mask:u8 relay_state:u8"
    )
    board: str
    oseq: int
    interval: int
    valid_from: int
    valid_until: int
    bat_w: "int | None"
    ev_ma: "int | None"
    pv_limit_w: "int | None"
    relay_mask: int
    relay_state: int


class Ack(Message):
    """The board's execution report for an order: what it actually applied."""

    TYPE = 3
    LEAF = "ack"
    DIR = UP
    # status: ST_*
    # reason: empty when applied as ordered
    SPEC = "board:id oseq:u32 ts:ts status:n3 reason:t48 bat_w:w? ev_ma:ma? pv_limit_w:wp? relay_state:u8"
    board: str
    oseq: int
    ts: int
    status: int
    reason: str
    bat_w: "int | None"
    ev_ma: "int | None"
    pv_limit_w: "int | None"
    relay_state: int


class Result(Message):
    """Summary of one cleared market interval, broadcast to the grid."""

    TYPE = 4
    LEAF = "result"
    DIR = BROADCAST
    # length: seconds
    # scheme: market scheme name, e.g. "pairwise"
    # price: clearing or mean price, milli-cent/kWh
    # traded: local energy traded, mWh
    # grid_imp: residual bought from the supplier, mWh
    # grid_exp: surplus sold to the supplier, mWh
    # digest: SHA-256 of the full clearing record
    SPEC = (
        "grid:id interval:ts length:len scheme:id price:price traded:u64 grid_imp:u64 "
        "grid_exp:u64 n_trades:u32 digest:key?"
    )
    grid: str
    interval: int
    length: int
    scheme: str
    price: int
    traded: int
    grid_imp: int
    grid_exp: int
    n_trades: int
    digest: "bytes | None"


class Enrol(Message):
    """A board announces its public key; signed with that key (proof of possession)."""

    TYPE = 5
    LEAF = "enrol"
    DIR = UP
    SPEC = "board:id pubkey:key board_type:id fw:t24 ts:ts"
    board: str
    pubkey: bytes
    board_type: str
    fw: str
    ts: int


class Status(Message):
    """Board health; the ``offline`` form is registered as the MQTT last will."""

    TYPE = 6
    LEAF = "status"
    DIR = UP
    # state: S_*
    # uptime: seconds
    # heap_free: bytes
    # queued: readings waiting in store-and-forward
    # dropped: readings dropped because the queue was full
    # rejected: orders the board rejected
    # reset: the cause of the last reset (machine.reset_cause(): 1 power on, 2 hard, 3 watchdog,
    #   4 deep sleep, 5 soft; 0 unknown)
    # fw: the running firmware version
    # boots: boots in a row that failed before this one (safe mode from 5)
    # block: the largest free block of memory, bytes
    # pending: a firmware version downloaded and waiting to run (None: none)
    SPEC = (
        "board:id ts:ts state:n3 uptime:u32 heap_free:u32 queued:u32 dropped:u32 rejected:u32 "
        "reset:u8? fw:t24? boots:u16? block:u32? pending:t24?"
    )
    board: str
    ts: int
    state: int
    uptime: int
    heap_free: int
    queued: int
    dropped: int
    rejected: int
    reset: "int | None"  # None: sent by firmware older than these fields
    fw: "str | None"
    boots: "int | None"
    block: "int | None"
    pending: "str | None"


class Update(Message):
    """An update manifest for one board's code, signed by the operator's release key (never the
    coordinator's order key); the image itself is published in chunks (firmware/ota.py)."""

    TYPE = 7
    LEAF = "update"
    DIR = DOWN
    # version: the image's firmware version ("major.minor.patch")
    # board_type: the board type the image is built for
    # min_fw: the oldest running version that may take it ("" for any)
    # size: the image's bytes; chunk: bytes per chunk (the last one may be shorter)
    # digest: SHA-256 of the image
    # downgrade: 1 when an older version may replace a newer one (--allow-downgrade)
    SPEC = "board:id version:t24 board_type:id min_fw:t24 size:u32 chunk:u16 digest:key downgrade:u8 ts:ts"
    board: str
    version: str
    board_type: str
    min_fw: str
    size: int
    chunk: int
    digest: bytes
    downgrade: int
    ts: int


class UpdateState(Message):
    """Where a board is with an update: downloading, refused (and why), pending, confirmed, rolled
    back."""

    TYPE = 8
    LEAF = "fwstate"
    DIR = UP
    # version: the update's version; state: U_*; reason: why it was refused or rolled back
    # got: bytes of the image in the inactive slot; fw: the version running now
    SPEC = "board:id ts:ts version:t24 state:u8 reason:t48 got:u32 fw:t24"
    board: str
    ts: int
    version: str
    state: int
    reason: str
    got: int
    fw: str


TYPES: "dict[int, type[Message]]" = {}
for _cls in (Reading, Order, Ack, Result, Enrol, Status, Update, UpdateState):
    TYPES[_cls.TYPE] = _cls
BY_LEAF: "dict[str, type[Message]]" = {}
for _t in TYPES.values():
    BY_LEAF[_t.LEAF] = _t


def from_list(items: object) -> Message:
    """Build a message from a decoded body array, checking type, version, arity and fields."""
    if not isinstance(items, list) or len(items) < 2:
        raise DecodeError("body is not a message array")
    type_id = items[0]
    if type(type_id) is not int or type_id not in TYPES:
        raise UnknownTypeError("unknown message type %r" % (type_id,))
    cls = TYPES[type_id]
    if items[1] != VERSION:
        raise DecodeError("%s version %r is not supported (expected %d)" % (cls.__name__, items[1], VERSION))
    spec = fields(cls)
    # a board with older firmware sends fewer fields: those added since at the end, all optional
    least = len(spec)
    while least and spec[least - 1][1] & OPT:
        least -= 1
    n = len(items) - 2
    if n > len(spec) or n < least:
        raise DecodeError("%s has %d fields, expected %d" % (cls.__name__, n, len(spec)))
    kw: "dict[str, Any]" = {}
    for i in range(n):
        kw[spec[i][0]] = items[2 + i]
    return cls(**kw)


def board_of(msg: Message) -> "str | None":
    """The board a message is from or for; None for grid-wide messages."""
    b = getattr(msg, "board", None)
    return b if isinstance(b, str) else None


def decode(body: bytes) -> Message:
    """Decode canonical body bytes into a message (no signature check: see ``frame``)."""
    return from_list(codec.unpack(body))
