"""Message types of the wire: stable numeric ids, a direction, and typed, range-checked fields.

A message body is the canonical msgpack array ``[type_id, version, field1, field2, ...]`` with
the fields in the order declared here. Units are integers throughout: energy in mWh, power in W
(positive = import from the grid or charging), voltage in mV, state of charge in per-mille,
current in mA, prices in milli-cent per kWh, times in Unix seconds (UTC).

Ids and directions never change once released; a new field means a new ``VERSION``.
Runs unchanged on CPython and MicroPython.
"""

from protocol import codec
from protocol.errors import DecodeError, FieldError, UnknownTypeError

TYPING = False  # True for mypy only (pyproject: always_true)
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

# order/ack status codes
ST_APPLIED = 0  # setpoints applied as ordered
ST_CLAMPED = 1  # applied, limited by the board's local limits
ST_REJECTED = 2  # not applied; ``reason`` says why
ST_FAILSAFE = 3  # board fell back to its safe defaults (no valid order in time)

# board states in Status
S_OFFLINE = 0
S_ONLINE = 1
S_FAILSAFE = 2

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
    FIELDS: "tuple[Field, ...]" = ()

    def __init__(self, **kw: "Any") -> None:
        for f in self.FIELDS:
            v = kw.pop(f[0], None)
            _check(type(self), f, v)
            setattr(self, f[0], v)
        if kw:
            raise FieldError("%s has no field(s) %s" % (type(self).__name__, ", ".join(sorted(kw))))

    def to_list(self) -> list[object]:
        """The body array: ``[TYPE, VERSION, field1, ...]``."""
        out: list[object] = [self.TYPE, VERSION]
        for f in self.FIELDS:
            out.append(getattr(self, f[0]))
        return out

    def encode(self) -> bytes:
        """Canonical msgpack bytes of the body."""
        return codec.pack(self.to_list())

    def values(self) -> tuple[object, ...]:
        return tuple(getattr(self, f[0]) for f in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and type(other) is type(self) and other.values() == self.values()

    def __hash__(self) -> int:
        return hash((self.TYPE, self.values()))

    def __repr__(self) -> str:
        parts = ["%s=%r" % (f[0], getattr(self, f[0])) for f in self.FIELDS]
        return "%s(%s)" % (type(self).__name__, ", ".join(parts))


class Reading(Message):
    """A signed meter reading: cumulative registers (never run backwards) and instantaneous values."""

    TYPE = 1
    LEAF = "reading"
    DIR = UP
    FIELDS = (
        ("board", ID, 0, 0),
        ("seq", UINT, 0, U32),  # persisted across reboot, +1 per reading
        ("ts", UINT, 0, MAX_TS),
        ("e_imp", UINT, 0, U64),  # cumulative import register, mWh (OBIS 1.8.0)
        ("e_exp", UINT, 0, U64),  # cumulative export register, mWh (OBIS 2.8.0)
        ("p", INT, -MAX_W, MAX_W),  # active power, W, + import / - export
        ("u", UINT, 0, 1_000_000),  # voltage, mV
        ("bat_soc", UINT | OPT, 0, 1000),  # battery state of charge, per-mille
        ("bat_p", INT | OPT, -MAX_W, MAX_W),  # battery power, W, + charging
        ("ev_state", UINT | OPT, 0, 3),  # 0 unplugged, 1 plugged, 2 charging, 3 full
        ("ev_p", UINT | OPT, 0, MAX_W),  # EV charging power, W
        ("flags", UINT, 0, 0xFFFF),  # F_* bits
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
    FIELDS = (
        ("board", ID, 0, 0),
        ("oseq", UINT, 0, U32),  # per-board order sequence, strictly increasing
        ("interval", UINT, 0, MAX_TS),  # start of the market interval
        ("valid_from", UINT, 0, MAX_TS),
        ("valid_until", UINT, 0, MAX_TS),
        ("bat_w", INT | OPT, -MAX_W, MAX_W),  # battery setpoint, W, + charge / - discharge
        ("ev_ma", UINT | OPT, 0, 80_000),  # EV charging current limit, mA
        ("pv_limit_w", UINT | OPT, 0, MAX_W),  # PV export limit, W
        ("relay_mask", UINT, 0, 0xFF),  # which relays this order sets
        ("relay_state", UINT, 0, 0xFF),  # their states (bit = on)
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
    FIELDS = (
        ("board", ID, 0, 0),
        ("oseq", UINT, 0, U32),
        ("ts", UINT, 0, MAX_TS),
        ("status", UINT, 0, 3),  # ST_*
        ("reason", TEXT, 0, 48),  # empty when applied as ordered
        ("bat_w", INT | OPT, -MAX_W, MAX_W),
        ("ev_ma", UINT | OPT, 0, 80_000),
        ("pv_limit_w", UINT | OPT, 0, MAX_W),
        ("relay_state", UINT, 0, 0xFF),
    )
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
    FIELDS = (
        ("grid", ID, 0, 0),
        ("interval", UINT, 0, MAX_TS),
        ("length", UINT, 1, 86_400),  # seconds
        ("scheme", ID, 0, 0),  # market scheme name, e.g. "pairwise"
        ("price", INT, -10_000_000, 10_000_000),  # clearing or mean price, milli-cent/kWh
        ("traded", UINT, 0, U64),  # local energy traded, mWh
        ("grid_imp", UINT, 0, U64),  # residual bought from the supplier, mWh
        ("grid_exp", UINT, 0, U64),  # surplus sold to the supplier, mWh
        ("n_trades", UINT, 0, U32),
        ("digest", BYTES | OPT, 32, 32),  # SHA-256 of the full clearing record
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
    FIELDS = (
        ("board", ID, 0, 0),
        ("pubkey", BYTES, 32, 32),
        ("board_type", ID, 0, 0),
        ("fw", TEXT, 0, 24),
        ("ts", UINT, 0, MAX_TS),
    )
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
    FIELDS = (
        ("board", ID, 0, 0),
        ("ts", UINT, 0, MAX_TS),
        ("state", UINT, 0, 2),  # S_*
        ("uptime", UINT, 0, U32),  # seconds
        ("heap_free", UINT, 0, U32),  # bytes
        ("queued", UINT, 0, U32),  # readings waiting in store-and-forward
        ("dropped", UINT, 0, U32),  # readings dropped because the queue was full
        ("rejected", UINT, 0, U32),  # orders the board rejected
    )
    board: str
    ts: int
    state: int
    uptime: int
    heap_free: int
    queued: int
    dropped: int
    rejected: int


TYPES: "dict[int, type[Message]]" = {}
for _cls in (Reading, Order, Ack, Result, Enrol, Status):
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
    if len(items) != 2 + len(cls.FIELDS):
        raise DecodeError("%s has %d fields, expected %d" % (cls.__name__, len(items) - 2, len(cls.FIELDS)))
    kw: "dict[str, Any]" = {}
    for i, f in enumerate(cls.FIELDS):
        kw[f[0]] = items[2 + i]
    return cls(**kw)


def board_of(msg: Message) -> "str | None":
    """The board a message is from or for; None for grid-wide messages."""
    b = getattr(msg, "board", None)
    return b if isinstance(b, str) else None


def decode(body: bytes) -> Message:
    """Decode canonical body bytes into a message (no signature check: see ``frame``)."""
    return from_list(codec.unpack(body))
