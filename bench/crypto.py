"""Signing on the board (pure MicroPython Ed25519 on the unix port) and verifying on the
coordinator, each beside the raw library figure measured in the same run."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.table import Row, rate
from protocol import crypto, frame, messages, topics
from tests.mpy import run_micropython

MPY_SIGN = """
import gc, time
from protocol import crypto, frame, messages, topics
N = %d
t0 = time.ticks_us()
key = crypto.SigningKey(bytes(range(32)))
key.sign(b"warm")  # first use: loads the fixed-base table
t_build = time.ticks_diff(time.ticks_us(), t0)
gc.collect()
free0 = gc.mem_free()
r = messages.Reading(board="m01", seq=1, ts=1750000000, e_imp=12345678, e_exp=4321, p=-2500,
                     u=231000, flags=0)
topic = topics.topic_for("demo", r)
signed = frame.signed_bytes(r.TYPE, topic, r.encode())
raw, full = [], []
for i in range(N):
    t = time.ticks_us(); key.sign(signed); raw.append(time.ticks_diff(time.ticks_us(), t))
    t = time.ticks_us(); frame.seal(r, topic, key); full.append(time.ticks_diff(time.ticks_us(), t))
raw.sort(); full.sort()
sig = key.sign(signed)
ver = []
for i in range(5):
    t = time.ticks_us()
    crypto.verify(key.public, signed, sig)
    ver.append(time.ticks_diff(time.ticks_us(), t))
ver.sort()
gc.collect()
print('{"build_us": %%d, "sign_us": %%d, "seal_us": %%d, "verify_us": %%d, "heap_free": %%d}' %% (
    t_build, raw[N // 2], full[N // 2], ver[2], free0))
"""


def run(ci: bool) -> list[Row]:
    n_mpy = 20 if ci else 200
    out = run_micropython(MPY_SIGN % n_mpy, timeout=600).stdout.strip().splitlines()[-1]
    mp = json.loads(out)

    key = crypto.SigningKey(bytes(range(32)))
    r = messages.Reading(
        board="m01", seq=1, ts=1_750_000_000, e_imp=12_345_678, e_exp=4321, p=-2500, u=231_000, flags=0
    )
    topic = topics.topic_for("demo", r)
    fr = frame.seal(r, topic, key)
    body, sig = frame.split(fr)
    signed = frame.signed_bytes(r.TYPE, topic, body)
    n = 500 if ci else 20_000
    lib_sign = rate(lambda: key.sign(signed), n)
    ver = crypto.Verifier(key.public)
    raw_key = Ed25519PublicKey.from_public_bytes(key.public)  # the library itself: the raw figure
    sig_b, signed_b = bytes(sig), bytes(signed)
    lib_verify = rate(lambda: raw_key.verify(sig_b, signed_b), n)
    proto_verify = rate(lambda: frame.open_frame(topic, fr, lambda m: ver), n)

    return [
        Row(
            "board sign (MicroPython unix, pure Ed25519)",
            mp["sign_us"] / 1000,
            "ms",
            1000 / lib_sign,
            "cryptography sign",
            "about 2 ms",
        ),
        Row(
            "board seal reading (encode + sign)",
            mp["seal_us"] / 1000,
            "ms",
            mp["sign_us"] / 1000,
            "sign alone",
        ),
        Row("board first signature (key + table load)", mp["build_us"] / 1000, "ms"),
        Row(
            "board verify (an order, once per interval)",
            mp["verify_us"] / 1000,
            "ms",
            1000 / lib_verify,
            "cryptography verify",
        ),
        Row("board heap free after keys+protocol", mp["heap_free"] / 1024, "KiB", 64, "of heap"),
        Row(
            "coordinator open_frame (decode+check+verify)",
            proto_verify,
            "/s",
            lib_verify,
            "raw verify/s",
            ">= 80% of raw",
        ),
    ]
