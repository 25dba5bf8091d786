# What an ESP32 running MicroPython has and the unix port lacks, for the stand-in board
# (tests/provision/standin.py), kept in files of its state directory: the ROMFS partition
# (vfs.rom_ioctl, as in MicroPython 1.25's extmod/vfs_rom_ioctl.c), NVS (esp32.NVS),
# machine.reset(), and the MicroPython version and platform the stand-in plays (board.json).
# The firmware and mpremote's code run unchanged against these.
import json
import os
import sys

import vfs as _vfs


class Reset(Exception):
    pass


class _Module:
    pass


def _copy(mod):
    m = _Module()
    for k in dir(mod):
        try:
            setattr(m, k, getattr(mod, k))
        except (AttributeError, TypeError):
            pass
    return m


def _rom(state, size):
    path = state + "/romfs0.bin"
    try:
        with open(path, "rb") as f:
            part = bytearray(f.read())
    except OSError:
        part = bytearray(b"\xff" * size)
    block = 4096

    def rom_ioctl(op, *args):
        if op == 1:
            return 1 if size else 0
        if args and args[0] != 0:
            return -19  # ENODEV
        if op == 2:
            return memoryview(part) if size else -19
        if op == 3:  # prepare (erase) for writing
            off, n = (0, args[1]) if len(args) == 2 else (args[1], args[2])
            if off + n > size:
                return -22
            for i in range(off, off + n):
                part[i] = 0xFF
            return 4
        if op == 4:
            off, buf = args[1], args[2]
            part[off : off + len(buf)] = buf
            return 0
        if op == 5:
            with open(path, "wb") as f:
                f.write(part)
            return 0
        if op == 6:
            return block
        return -22

    return rom_ioctl


class NVS:
    """esp32.NVS over a JSON file: set_blob/get_blob/erase_key/commit, errors as on a board."""

    def __init__(self, state, namespace):
        self.path = state + "/nvs-" + namespace + ".json"
        try:
            with open(self.path) as f:
                self.d = json.load(f)
        except OSError:
            self.d = {}
        self.pending = dict(self.d)

    def set_blob(self, key, value):
        if len(key) > 15:
            raise OSError(22)
        self.pending[key] = bytes(value).hex()

    def get_blob(self, key, buf):
        if key not in self.d:
            raise OSError(2)  # ENOENT (ESP_ERR_NVS_NOT_FOUND)
        v = bytes.fromhex(self.d[key])
        if len(v) > len(buf):
            raise OSError(22)
        buf[: len(v)] = v
        return len(v)

    def erase_key(self, key):
        if key not in self.pending:
            raise OSError(2)
        del self.pending[key]

    def commit(self):
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.pending, f)
        os.rename(self.path + ".tmp", self.path)
        self.d = dict(self.pending)


def _path(p):
    """A board's paths start at its filesystem's root: here the board's directory (the cwd)."""
    if isinstance(p, str):
        p = p.lstrip("/") or "."
    return p


def _os():
    o = _copy(os)

    def wrap(f):
        return lambda p="", *a: f(_path(p), *a)

    for name in ("stat", "listdir", "ilistdir", "mkdir", "remove", "rmdir", "statvfs", "chdir"):
        f = getattr(os, name, None)
        if f is not None:
            setattr(o, name, wrap(f))
    o.rename = lambda a, b: os.rename(_path(a), _path(b))
    return o


def board_open(p, *a):
    return open(_path(p), *a)


def install(state, rom=True):
    """``rom=False``: the ROMFS partition is mounted already, outside the heap (the firmware's run)."""
    with open(state + "/board.json") as f:
        b = json.load(f)
    s = _copy(sys)
    impl = _Module()
    impl.name = "micropython"
    impl.version = tuple(b["version"]) + ("",)
    impl._machine = b["machine"]
    impl._mpy = sys.implementation._mpy
    s.implementation = impl
    s.platform = "esp32"
    sys.modules["sys"] = s
    v = _copy(_vfs)
    if rom and b["romfs"] is not None:  # None: a MicroPython built without ROMFS support
        v.rom_ioctl = _rom(state, b["romfs"])
        part = v.rom_ioctl(2, 0)
        if not isinstance(part, int) and bytes(part[:3]) == b"\xd2\xcd\x31":
            _vfs.mount(_vfs.VfsRom(part), "/rom")  # as MicroPython 1.25+ mounts it at boot
            sys.path.insert(0, "/rom")
    sys.modules["vfs"] = v

    def reset():
        raise Reset()

    import machine as _machine

    m = _copy(_machine)
    m.reset = reset
    m.unique_id = lambda: bytes.fromhex(b["mac"])
    sys.modules["machine"] = m
    e = _Module()
    e.NVS = lambda namespace: NVS(state, namespace)
    sys.modules["esp32"] = e
    sys.modules["os"] = _os()
