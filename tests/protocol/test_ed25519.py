"""Ed25519 (protocol.ed25519) and SHA-512 (protocol.sha512, protocol._sha512_viper).

Checked against RFC 8032 section 7.1 and against ``cryptography`` (OpenSSL): on CPython with
Hypothesis, and on the real MicroPython unix port inside a 64 KiB heap.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ed25519
from protocol.errors import BadKeyError, ProtocolError, SignatureError
from protocol.sha512 import sha512
from tests.mpy import run_micropython

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
MANY = settings(max_examples=300, deadline=None)


from tests.protocol.rfc8032 import RFC8032, Vector  # noqa: E402


def ref_public(seed: bytes) -> bytes:
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def ref_sign(seed: bytes, msg: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(msg)


# --- RFC 8032 vectors -----------------------------------------------------------------------


def test_rfc8032_message_lengths() -> None:
    assert [len(bytes.fromhex(v.message)) for v in RFC8032] == [0, 1, 2, 1023, 64]
    assert bytes.fromhex(RFC8032[4].message) == hashlib.sha512(b"abc").digest()


@pytest.mark.parametrize("v", RFC8032, ids=lambda v: v.name)
def test_rfc8032_cryptography(v: Vector) -> None:
    seed = bytes.fromhex(v.secret)
    assert ref_public(seed).hex() == v.public
    assert ref_sign(seed, bytes.fromhex(v.message)).hex() == v.signature


@pytest.mark.parametrize("v", RFC8032, ids=lambda v: v.name)
def test_rfc8032_cpython(v: Vector) -> None:
    seed = bytes.fromhex(v.secret)
    msg = bytes.fromhex(v.message)
    key = ed25519.SigningKey(seed)
    assert key.public.hex() == v.public
    assert ed25519.public_key(seed).hex() == v.public
    assert key.sign(msg).hex() == v.signature
    ed25519.verify(bytes.fromhex(v.public), msg, bytes.fromhex(v.signature))


# Signs (seed, message) pairs, verifies each signature, prints "public,signature" lines.
# Pairs come from VECTORS in the code (compiled while the heap is empty: fits a 1 KiB
# message) or as "seed,message" hex lines on stdin, handled one at a time.
MPY_SIGN = """
import sys
from binascii import unhexlify
from protocol import ed25519


def pairs():
    for v in VECTORS:
        yield v
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        seed, msg = line.split(",")
        yield unhexlify(seed), unhexlify(msg.strip())


for seed, msg in pairs():
    key = ed25519.SigningKey(seed)
    sig = key.sign(msg)
    ed25519.verify(key.public, msg, sig)
    print(key.public.hex() + "," + sig.hex())
print("done")
"""


def test_rfc8032_micropython() -> None:
    vectors = [(bytes.fromhex(v.secret), bytes.fromhex(v.message)) for v in RFC8032]
    out = run_micropython(f"VECTORS = {vectors!r}\n" + MPY_SIGN, stdin="").stdout.split()
    assert out == [f"{v.public},{v.signature}" for v in RFC8032] + ["done"]


# --- CPython: the pure code against cryptography --------------------------------------------

seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=400)


@MANY
@given(seeds, messages)
def test_sign_matches_cryptography(seed: bytes, msg: bytes) -> None:
    key = ed25519.SigningKey(seed)
    assert key.public == ref_public(seed)
    assert key.sign(msg) == ref_sign(seed, msg)


@MANY
@given(seeds, messages)
def test_verify_accepts_cryptography_signatures(seed: bytes, msg: bytes) -> None:
    ed25519.verify(ref_public(seed), msg, ref_sign(seed, msg))


@MANY
@given(seeds, messages, st.data())
def test_tampered_message_rejected(seed: bytes, msg: bytes, data: st.DataObject) -> None:
    sig = ref_sign(seed, msg)
    other = data.draw(messages.filter(lambda m: m != msg), label="other message")
    with pytest.raises(SignatureError):
        ed25519.verify(ref_public(seed), other, sig)


@MANY
@given(seeds, messages, st.integers(0, 63), st.integers(0, 7))
def test_tampered_signature_rejected(seed: bytes, msg: bytes, pos: int, bit: int) -> None:
    sig = bytearray(ref_sign(seed, msg))
    sig[pos] ^= 1 << bit
    with pytest.raises(SignatureError):
        ed25519.verify(ref_public(seed), msg, bytes(sig))


@MANY
@given(seeds, seeds, messages)
def test_wrong_key_rejected(seed: bytes, other: bytes, msg: bytes) -> None:
    pub = ref_public(other)
    if pub == ref_public(seed):
        return
    with pytest.raises(SignatureError):
        ed25519.verify(pub, msg, ref_sign(seed, msg))


def naive_mul(k: int, x: int, y: int) -> tuple[int, int]:
    """Affine double-and-add, straight from the curve equation (slow, obviously right)."""

    def add(p1: tuple[int, int], p2: tuple[int, int]) -> tuple[int, int]:
        (x1, y1), (x2, y2) = p1, p2
        t = D * x1 * x2 * y1 * y2 % P
        return (
            (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P,
        )

    acc, pt = (0, 1), (x, y)
    while k:
        if k & 1:
            acc = add(acc, pt)
        pt = add(pt, pt)
        k >>= 1
    return acc


def affine(pt: tuple[int, ...]) -> tuple[int, int]:
    zi = pow(pt[2], -1, P)
    return pt[0] * zi % P, pt[1] * zi % P


@settings(max_examples=100, deadline=None)
@given(st.integers(0, L - 1) | st.sampled_from([0, 1, 2, L - 1, L - 2, 2**252, 2**253 - 1]))
def test_fixed_base_comb_matches_naive(k: int) -> None:
    assert affine(ed25519._mul_base(k)) == naive_mul(k, ed25519._BX, ed25519._BY)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, L - 1), st.integers(1, L - 1))
def test_variable_base_matches_naive(k: int, a: int) -> None:
    x, y = naive_mul(a, ed25519._BX, ed25519._BY)
    got = affine(ed25519._mul_var(k, x, y))
    assert got == naive_mul(k, x, y)
    assert got == naive_mul(k * a % L, ed25519._BX, ed25519._BY)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, P - 1))
def test_inverse(z: int) -> None:
    assert ed25519._inv(z) * z % P == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=5))
def test_sha512_parts(parts: list[bytes]) -> None:
    assert sha512(*parts) == hashlib.sha512(b"".join(parts)).digest()


# --- rejections, identical on both runtimes -------------------------------------------------


def encode(x: int, y: int) -> bytes:
    return (y | (x & 1) << 255).to_bytes(32, "little")


def recover_x(y: int) -> int | None:
    """An x with (x, y) on the curve, or None."""
    u = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    x = pow(u, (P + 3) // 8, P)
    if x * x % P != u:
        x = x * pow(2, (P - 1) // 4, P) % P
    return x if x * x % P == u else None


def off_curve_y() -> int:
    """Smallest y > 1 with no point (x, y) on the curve."""
    y = 2
    while recover_x(y) is not None:
        y += 1
    return y


def torsion_point(order: int) -> bytes:
    """Encoding of a point of exactly ``order`` (2, 4 or 8): [L]P for a suitable P."""
    for y in range(2, 100):
        x = recover_x(y)
        if x is None:
            continue
        tx, ty = naive_mul(L, x, y)
        if naive_mul(order, tx, ty) == (0, 1) and naive_mul(order // 2, tx, ty) != (0, 1):
            return encode(tx, ty)
    raise AssertionError("no torsion point found")


def rejection_cases() -> list[tuple[str, bytes, bytes, bytes, type[ProtocolError], str]]:
    """(name, public, msg, sig, error class, text in the message)."""
    seed = bytes(range(32))
    pub = ref_public(seed)
    msg = b"meter 7: 1234.5 kWh"
    sig = ref_sign(seed, msg)
    r, s = sig[:32], int.from_bytes(sig[32:], "little")
    other_pub = ref_public(bytes(32))
    bad_y = off_curve_y().to_bytes(32, "little")
    identity = encode(0, 1)
    order2, order4, order8 = torsion_point(2), torsion_point(4), torsion_point(8)
    non_canonical_y = (P + 3).to_bytes(32, "little")  # y = 3 + p
    x0_sign = (1 | 1 << 255).to_bytes(32, "little")  # x = 0 with the sign bit set
    return [
        ("tampered message", pub, msg + b"0", sig, SignatureError, "does not verify"),
        ("tampered R", pub, msg, bytes([sig[0] ^ 4]) + sig[1:], SignatureError, ""),
        ("tampered S", pub, msg, sig[:40] + bytes([sig[40] ^ 1]) + sig[41:], SignatureError, ""),
        ("wrong key", other_pub, msg, sig, SignatureError, "does not verify"),
        ("S >= L", pub, msg, r + (s + L).to_bytes(32, "little"), SignatureError, "S >= L"),
        ("S = 2^256-1", pub, msg, r + b"\xff" * 32, SignatureError, "S >= L"),
        ("R off curve", pub, msg, bad_y + sig[32:], SignatureError, "not on the curve"),
        ("R y >= p", pub, msg, non_canonical_y + sig[32:], SignatureError, "canonical"),
        ("R x=0 sign", pub, msg, x0_sign + sig[32:], SignatureError, "canonical"),
        ("R identity", pub, msg, identity + sig[32:], SignatureError, "small order"),
        ("R order 4", pub, msg, order4 + sig[32:], SignatureError, "small order"),
        ("R order 8", pub, msg, order8 + sig[32:], SignatureError, "small order"),
        ("A off curve", bad_y, msg, sig, BadKeyError, "not on the curve"),
        ("A y >= p", non_canonical_y, msg, sig, BadKeyError, "canonical"),
        ("A identity", identity, msg, sig, BadKeyError, "small order"),
        ("A order 2", order2, msg, sig, BadKeyError, "small order"),
        ("A order 4", order4, msg, sig, BadKeyError, "small order"),
        ("A order 8", order8, msg, sig, BadKeyError, "small order"),
        ("short key", pub[:31], msg, sig, BadKeyError, "32 bytes"),
        ("long key", pub + b"\0", msg, sig, BadKeyError, "32 bytes"),
        ("short sig", pub, msg, sig[:63], SignatureError, "64 bytes"),
        ("long sig", pub, msg, sig + b"\0", SignatureError, "64 bytes"),
        ("empty sig", pub, msg, b"", SignatureError, "64 bytes"),
    ]


@pytest.mark.parametrize("case", rejection_cases(), ids=lambda c: c[0])
def test_rejections_cpython(
    case: tuple[str, bytes, bytes, bytes, type[ProtocolError], str],
) -> None:
    _, pub, msg, sig, err, text = case
    with pytest.raises(err) as info:
        ed25519.verify(pub, msg, sig)
    assert type(info.value) is err
    assert text in str(info.value)


def test_bad_seed() -> None:
    for seed in (b"", bytes(31), bytes(33)):
        with pytest.raises(BadKeyError):
            ed25519.SigningKey(seed)
        with pytest.raises(BadKeyError):
            ed25519.public_key(seed)


MPY_VERIFY = """
import sys
from binascii import unhexlify
from protocol import ed25519
from protocol.errors import ProtocolError
while True:
    line = sys.stdin.readline()
    if not line:
        break
    pub, msg, sig = [unhexlify(f) for f in line.strip().split(",")]
    try:
        ed25519.verify(pub, msg, sig)
        print("ok")
    except ProtocolError as e:
        print(type(e).__name__ + ": " + str(e))
for seed in (b"", bytes(31), bytes(33)):
    try:
        ed25519.SigningKey(seed)
        print("seed accepted")
    except ProtocolError as e:
        print(type(e).__name__ + ": " + str(e))
"""


def test_rejections_micropython() -> None:
    cases = rejection_cases()
    rng = random.Random(8032)
    accept = []
    for _ in range(20):
        seed, msg = rng.randbytes(32), rng.randbytes(rng.randrange(300))
        accept.append((ref_public(seed), msg, ref_sign(seed, msg)))
    lines = [(c[1], c[2], c[3]) for c in cases] + accept
    stdin = "".join(f"{a.hex()},{m.hex()},{s.hex()}\n" for a, m, s in lines)
    out = run_micropython(MPY_VERIFY, stdin=stdin).stdout.splitlines()
    assert len(out) == len(lines) + 3, out
    for (name, _, _, _, err, text), got in zip(cases, out, strict=False):
        assert got.startswith(err.__name__ + ": ") and text in got, (name, got)
    assert out[len(cases) : len(lines)] == ["ok"] * len(accept)
    assert all(o.startswith("BadKeyError: ") for o in out[len(lines) :]), out


# --- MicroPython: a batch against cryptography ----------------------------------------------


def test_sign_batch_micropython() -> None:
    rng = random.Random(25519)
    # SHA-512 block boundaries: the hashed inputs are 32 + n and 64 + n bytes long.
    lengths = [0, 1, 15, 16, 17, 47, 48, 63, 64, 65, 79, 80, 95, 96, 97, 111, 112, 128, 200, 300]
    lengths += [rng.randrange(400) for _ in range(20)]
    pairs = [(rng.randbytes(32), rng.randbytes(n)) for n in lengths]
    stdin = "".join(f"{seed.hex()},{msg.hex()}\n" for seed, msg in pairs)
    out = run_micropython("VECTORS = []\n" + MPY_SIGN, stdin=stdin).stdout.split()
    expected = [f"{ref_public(s).hex()},{ref_sign(s, m).hex()}" for s, m in pairs]
    assert out == expected + ["done"]


# --- MicroPython: SHA-512 in viper ----------------------------------------------------------

SHA_LENGTHS = list(range(301)) + [383, 384, 385, 1000, 1023, 1024, 1025, 4095, 4096, 4097]

MPY_SHA = """
import sys
from binascii import hexlify
from protocol import _sha512_viper
from protocol.sha512 import sha512
data = bytes((i * 7 + 3) & 255 for i in range(4097))
for n in %r:
    sys.stdout.write(hexlify(_sha512_viper.sha512(data[:n])).decode() + "\\n")
for cuts in %r:
    parts = []
    a = 0
    for b in cuts:
        parts.append(memoryview(data)[a:b])
        a = b
    sys.stdout.write(hexlify(sha512(*parts)).decode() + "\\n")
"""


def test_sha512_viper_micropython() -> None:
    data = bytes((i * 7 + 3) & 255 for i in range(4097))
    rng = random.Random(512)
    splits = [[0, 0, 5], [127, 128, 129], [1, 2, 3, 130, 300]]
    for _ in range(30):
        end = rng.randrange(1200)
        splits.append(sorted(rng.randrange(end + 1) for _ in range(rng.randrange(1, 6))) + [end])
    out = run_micropython(MPY_SHA % (SHA_LENGTHS, splits)).stdout.split()
    expected = [hashlib.sha512(data[:n]).hexdigest() for n in SHA_LENGTHS]
    expected += [hashlib.sha512(data[: cuts[-1]]).hexdigest() for cuts in splits]
    assert len(out) == len(expected)
    bad = [i for i, (a, b) in enumerate(zip(out, expected, strict=True)) if a != b]
    assert not bad, bad


# --- MicroPython: heap and timing -----------------------------------------------------------

MPY_HEAP = """
import gc, time, micropython
from protocol import ed25519
from protocol.sha512 import sha512
sha512(b"")  # imports the viper SHA-512
gc.collect()
free0 = gc.mem_free()
t = time.ticks_us()
ed25519._build_tables()
build_us = time.ticks_diff(time.ticks_us(), t)
gc.collect()
free1 = gc.mem_free()
print("table_build_ms %.1f" % (build_us / 1000))
print("table_heap_bytes %d" % (free0 - free1))
key = ed25519.SigningKey(bytes(range(32)))
msg = bytes(range(100))
times = []
for i in range(50):
    t = time.ticks_us()
    sig = key.sign(msg)
    times.append(time.ticks_diff(time.ticks_us(), t))
times.sort()
print("sign_median_ms %.3f" % (times[25] / 1000))
times = []
for i in range(9):
    t = time.ticks_us()
    ed25519.verify(key.public, msg, sig)
    times.append(time.ticks_diff(time.ticks_us(), t))
times.sort()
print("verify_median_ms %.3f" % (times[4] / 1000))
for i in range(8):
    m = msg[: i * 13]
    s = key.sign(m)
    ed25519.verify(key.public, m, s)
    print("sig %d %s" % (len(m), s.hex()))
gc.collect()
print("mem_free %d of %d" % (gc.mem_free(), gc.mem_free() + gc.mem_alloc()))
micropython.mem_info()
"""


def test_heap_and_timing_micropython() -> None:
    out = run_micropython(MPY_HEAP, heap="64k").stdout
    print(out)  # figures for the log: pytest -s or -rP shows them
    fields = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert int(fields["table_heap_bytes"]) <= 24 * 1024
    seed = bytes(range(32))
    for line in out.splitlines():
        if line.startswith("sig "):
            _, n, sig = line.split()
            assert sig == ref_sign(seed, bytes(range(100))[: int(n)]).hex()
    assert sum(line.startswith("sig ") for line in out.splitlines()) == 8


def test_committed_table_matches_generator() -> None:
    from tests.protocol import ed25519_table_gen

    assert ed25519_table_gen.PATH.read_text() == ed25519_table_gen.render(), (
        "protocol/ed25519_table.py is stale: run python -m tests.protocol.ed25519_table_gen"
    )
