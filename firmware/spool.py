# Store-and-forward queue on flash for signed frames the broker could not take.
#
# A ring of fixed-size slots in one file plus a persisted head/count. Frames replay oldest first,
# in sequence order. When the ring is full the NEWEST queued frame is replaced by the new one, so
# the oldest frames are dropped last (none of them, in fact) and the most recent registers are
# always kept: with cumulative registers a dropped reading loses time resolution, never energy.
# Every replacement is counted in ``dropped``.
import struct

from errors import FirmwareError
from persist import Record

SLOT = 200  # 2-byte length + frame; a reading frame is about 110 bytes


class SpoolError(FirmwareError):
    code = "spool"


class Spool:
    def __init__(self, path, capacity):
        self.path = path
        self.capacity = capacity
        self.meta = Record(path + ".meta", "<III")
        self.head = 0
        self.count = 0
        self.dropped = 0
        self._buf = bytearray(SLOT)
        got = self.meta.load()
        if got is not None:
            self.head, self.count, self.dropped = got
            if self.count > capacity or self.head >= capacity:  # capacity changed: start afresh
                self.head = self.count = 0
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        self._f = f

    def __len__(self):
        return self.count

    def _write_slot(self, i, frame):
        if len(frame) > SLOT - 2:
            raise SpoolError("frame of %d bytes does not fit a %d-byte slot" % (len(frame), SLOT))
        self._f.seek(i * SLOT)
        self._f.write(struct.pack("<H", len(frame)))
        self._f.write(frame)
        self._f.flush()

    def push(self, frame):
        """Queue a frame (raises SpoolError if it cannot be stored)."""
        if self.count < self.capacity:
            self._write_slot((self.head + self.count) % self.capacity, frame)
            self.count += 1
        else:
            self._write_slot((self.head + self.count - 1) % self.capacity, frame)
            self.dropped += 1
        self.meta.save(self.head, self.count, self.dropped)

    def peek(self):
        """The oldest queued frame, or None. A slot that cannot hold a frame (torn by a power cut
        on FAT, or the file lost behind the persisted count) is dropped and counted: raising
        would stop the replay at the same slot for good."""
        while self.count:
            self._f.seek(self.head * SLOT)
            n = self._f.readinto(self._buf)
            if n is not None and n >= 2:
                size = struct.unpack_from("<H", self._buf)[0]
                if size <= SLOT - 2 and size + 2 <= n:
                    return bytes(self._buf[2 : 2 + size])
            print("peergrid: spool slot %d is unreadable: dropped" % self.head)
            self.dropped += 1
            self.pop()
        return None

    def pop(self):
        """Forget the oldest frame (after the broker acknowledged it)."""
        if self.count:
            self.head = (self.head + 1) % self.capacity
            self.count -= 1
            self.meta.save(self.head, self.count, self.dropped)

    def close(self):
        self._f.close()
