# Power-loss-safe persistence of a small fixed record, with bounded flash wear.
#
# Two slots (<name>.a, <name>.b), each: magic, generation, payload, CRC-32. A save writes the
# slot NOT holding the newest valid record, so a power cut mid-write leaves the previous record
# intact; load picks the valid slot with the highest generation. Works on LittleFS and FAT.
import struct
from binascii import crc32

from errors import FirmwareError

_MAGIC = b"PG"


class PersistError(FirmwareError):
    code = "persist"


class Record:
    def __init__(self, path, fmt):
        self.path = path
        self.fmt = fmt  # struct format of the payload
        self.size = struct.calcsize(fmt)
        self.gen = 0
        self.writes = 0

    def _read(self, slot):
        try:
            with open(self.path + slot, "rb") as f:
                raw = f.read()
        except OSError:
            return None
        n = 6 + self.size
        if len(raw) != n + 4 or raw[:2] != _MAGIC:
            return None
        if struct.unpack_from("<I", raw, n)[0] != crc32(raw[:n]) & 0xFFFFFFFF:
            return None
        return struct.unpack_from("<I", raw, 2)[0], struct.unpack_from(self.fmt, raw, 6)

    def load(self):
        """The newest valid payload tuple, or None on a fresh board."""
        best = None
        for slot in (".a", ".b"):
            got = self._read(slot)
            if got is not None and (best is None or got[0] > best[0]):
                best = got
        if best is None:
            return None
        self.gen = best[0]
        return best[1]

    def save(self, *values):
        self.gen += 1
        body = _MAGIC + struct.pack("<I", self.gen) + struct.pack(self.fmt, *values)
        slot = ".a" if self.gen & 1 else ".b"
        try:
            with open(self.path + slot, "wb") as f:
                f.write(body)
                f.write(struct.pack("<I", crc32(body) & 0xFFFFFFFF))
        except OSError as e:
            raise PersistError("cannot write %s%s: %s" % (self.path, slot, e)) from None
        self.writes += 1
