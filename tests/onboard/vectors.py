# Runs on MicroPython (from the test ROMFS image) and CPython: checks golden vectors fed as
# JSON lines on stdin.
# Each line: {"kind": ..., ...}; prints "ok <name>" or "FAIL <name>: <why>", then a summary.
import gc
import json
import sys

from protocol import codec, crypto, errors, frame, messages

_keys = {}


def unhex(v):
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    if isinstance(v, list):
        return [unhex(x) for x in v]
    return v


def key(seed_hex):
    k = _keys.get(seed_hex)
    if k is None:
        k = crypto.SigningKey(bytes.fromhex(seed_hex))
        _keys[seed_hex] = k
    return k


def expect_error(fn, name):
    try:
        fn()
    except errors.ProtocolError as e:
        cls = getattr(errors, name)
        if isinstance(e, cls):
            return None
        return "raised %s (%s), expected %s" % (type(e).__name__, e, name)
    return "accepted, expected %s" % name


def check(v):
    kind = v["kind"]
    if kind == "codec":
        value = unhex(v["value"])
        got = codec.pack_portable(value).hex()
        if got != v["hex"]:
            return "encoded %s, expected %s" % (got, v["hex"])
        if codec.unpack_portable(bytes.fromhex(v["hex"])) != value:
            return "decoded value differs"
        return None
    if kind == "codec_reject":
        return expect_error(lambda: codec.unpack_portable(bytes.fromhex(v["hex"])), v["error"])
    if kind == "message":
        cls = messages.TYPES[v["type_id"]]
        fields = {}
        for name in v["fields"]:
            fields[name] = unhex(v["fields"][name])
        msg = cls(**fields)
        body = msg.encode()
        if body.hex() != v["body"]:
            return "body %s, expected %s" % (body.hex(), v["body"])
        if messages.decode(body) != msg:
            return "decode(body) differs"
        k = key(v["seed"])
        if k.public.hex() != v["public"]:
            return "public key differs"
        fr = frame.seal(msg, v["topic"], k)
        if fr.hex() != v["frame"]:
            return "frame %s, expected %s" % (fr.hex(), v["frame"])
        ver = crypto.Verifier(k.public)
        got = frame.open_frame(v["topic"], bytes.fromhex(v["frame"]), lambda m: ver)
        if got != msg:
            return "open_frame returned a different message"
        return None
    if kind == "frame_reject":
        ver = crypto.Verifier(bytes.fromhex(v["public"]))
        data = bytes.fromhex(v["frame"])
        return expect_error(lambda: frame.open_frame(v["topic"], data, lambda m: ver), v["error"])
    if kind == "rfc8032":
        k = key(v["secret"])
        if k.public.hex() != v["public"]:
            return "public key differs"
        msg = bytes.fromhex(v["message"])
        sig = k.sign(msg)
        if sig.hex() != v["signature"]:
            return "signature differs"
        crypto.verify(k.public, msg, sig)
        return None
    return "unknown kind %s" % kind


def main():
    passed = failed = 0
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        gc.collect()
        v = json.loads(line)
        try:
            why = check(v)
        except Exception as e:  # report, keep going: one line per vector
            why = "%s: %s" % (type(e).__name__, e)
        if why is None:
            passed += 1
            print("ok", v["name"])
        else:
            failed += 1
            print("FAIL", v["name"] + ":", why)
    gc.collect()
    print("vectors: %d passed, %d failed; heap free %d" % (passed, failed, gc.mem_free()))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
