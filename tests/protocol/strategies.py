"""Hypothesis strategies for wire values and every message type, built from the field table."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from protocol import messages as M

ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
ids = st.builds(
    lambda a, b: a + b,
    st.text(ID_CHARS, min_size=1, max_size=1),
    st.text(ID_CHARS + "_-", max_size=M.ID_MAX - 1),
)
printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64)

# Any value the codec accepts.
leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | printable
    | st.binary(max_size=300)
)
_l1 = st.lists(leaf, max_size=20)
_l2 = st.lists(leaf | _l1, max_size=8)
wire_values = leaf | _l1 | _l2 | st.lists(leaf | _l2, max_size=6)  # at most 3 nested arrays


def _field(kind: int, lo: int, hi: int) -> st.SearchStrategy[Any]:
    k = kind & 0x0F
    if k in (M.UINT, M.INT):
        s: st.SearchStrategy[Any] = st.integers(min_value=lo, max_value=hi)
    elif k == M.ID:
        s = ids
    elif k == M.BYTES:
        s = st.binary(min_size=lo, max_size=lo)
    else:
        s = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=hi)
    if kind & M.OPT:
        s = st.none() | s
    return s


def message_of(cls: type[M.Message]) -> st.SearchStrategy[M.Message]:
    fields = {f[0]: _field(f[1], f[2], f[3]) for f in M.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


any_message = st.one_of([message_of(c) for c in M.TYPES.values()])
