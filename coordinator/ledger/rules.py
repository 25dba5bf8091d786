"""The rules a stored reading obeys, in one place: ingest applies them to every reading before it
is stored, and ``ledger verify`` and ``audit verify`` check the stored ones against the same
functions, so verify never fails on what ingest stored.

- **Key validity in time**: a board key valid from ``valid_from`` to ``valid_to`` signs readings
  stamped in that span, with ``SKEW_S`` of clock skew either side (a board's clock runs a little
  off the coordinator's around an enrolment or a key rotation).
- **Settled time**: a reading stamped inside an interval already settled, and earlier than the
  board's newest stored reading (its clock went back into settled time), is refused. A board that
  replays its spool after an outage stamps its readings in order and later than its newest stored
  one: those are stored, and their energy settles in the next interval, as a late reading's does.
- **Plausible energy**: the energy between a board's reading and its previous accepted one is at
  most its connection limit (W) times the elapsed time, times ``MARGIN_PCT`` percent, plus
  ``SLACK_MWH`` for the registers' resolution; beyond that the reading is held in quarantine
  for the operator (:mod:`coordinator.ledger.quarantine`). A board clock set back between two
  readings (NTP correcting it) is timed by their sequence numbers instead (:func:`elapsed_s`).
"""

from __future__ import annotations

SKEW_S = 300  # a board clock may run this far from the coordinator's around a key rotation
MARGIN_PCT = 150  # plausible energy: up to 1.5 x the connection limit over the elapsed time
SLACK_MWH = 10_000  # plus 10 Wh: register resolution and a reading's own timing jitter
DEFAULT_LIMIT_W = 43_500  # a 3 x 63 A connection: the bound when the board's limits are unknown
READING_S = 10  # a board reads at most this often: the time a sequence number stands for
STEP_BACK_CREDIT_S = 900  # after a clock step back, the most time sequence numbers may stand for


def key_valid_at(ts: int, valid_from: int, valid_to: int | None) -> bool:
    """Whether a board key valid from ``valid_from`` to ``valid_to`` (None: still current) may have
    signed a message stamped ``ts``, allowing ``SKEW_S`` of clock skew either side."""
    return ts >= valid_from - SKEW_S and (valid_to is None or ts <= valid_to + SKEW_S)


def time_refusal(
    ts: int, *, key_from: int, last_ts: int | None, settled_end: int | None
) -> tuple[str, str] | None:
    """(reason code, text) when a reading stamped ``ts`` breaks the key or settled-time rule."""
    if not key_valid_at(ts, key_from, None):
        return "before_key", f"stamped {key_from - ts} s before its key was enrolled"
    if settled_end is not None and last_ts is not None and ts < settled_end and ts < last_ts:
        return "settled_time", f"stamped {last_ts - ts} s before its newest stored reading, in settled time"
    return None


def energy_bound(limit_w: int, elapsed_s: int) -> int:
    """The most energy (mWh) a connection of ``limit_w`` can plausibly carry in ``elapsed_s``."""
    return max(0, limit_w) * max(0, elapsed_s) * MARGIN_PCT // 360 + SLACK_MWH


def elapsed_s(ts: int, seq: int, base_ts: int, base_seq: int) -> int:
    """Seconds between a board's reading and its previous accepted one: by their timestamps, or,
    when the board's clock was set back between them, by their sequence numbers (at most
    ``STEP_BACK_CREDIT_S``: a clock set back cannot buy a board an unbounded allowance)."""
    if ts > base_ts:
        return ts - base_ts
    return min(max(0, seq - base_seq) * READING_S, STEP_BACK_CREDIT_S)


def implausible(
    d_imp: int, d_exp: int, elapsed_s: int, import_w: int, export_w: int
) -> str | None:
    """Why a register advance of ``d_imp``/``d_exp`` mWh in ``elapsed_s`` is implausible, or None."""
    for what, d, w in (("import", d_imp, import_w), ("export", d_exp, export_w)):
        bound = energy_bound(w, elapsed_s)
        if d > bound:
            return (
                f"{what} rose {d / 1e6:.3f} kWh in {elapsed_s} s, more than {bound / 1e6:.3f} kWh "
                f"({w} W x {MARGIN_PCT}% + {SLACK_MWH // 1000} Wh)"
            )
    return None
