# Store-and-forward queue on flash for signed frames the broker could not take.
#
# Append-only segments: a directory of segment files named by a rising number, each at most one
# flash erase block (4 KiB) of records (2-byte length + frame). A frame is only ever appended to
# the newest segment; the replay reads the oldest one from a position kept in a small record
# (persist.Record: segment, offset, dropped), and a segment is deleted whole once replayed. On
# LittleFS an append copies the segment's one block (one erase), a delete erases nothing, and no
# frame already written is rewritten: about one erase per queued frame, whatever the queue holds.
# (A ring of slots in one big file rewrote the rest of the file behind every slot it wrote.)
#
# Frames replay oldest first, in sequence order. When the queue holds ``capacity`` frames the
# oldest segment goes (its frames counted in ``dropped``): the newest registers are always kept,
# and with cumulative registers a dropped reading loses time resolution, never energy.
import os
import struct

from errors import FirmwareError
from persist import Record

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc,no-untyped-def]
        return x


SLOT = const(200)  # the largest record: 2-byte length + frame (a reading frame is about 110 bytes)
_SEG = const(4096)  # a segment's size: one erase block of the ESP32's flash


class SpoolError(FirmwareError):
    code = "spool"


class Spool:
    def __init__(self, path, capacity):
        self.path = path
        self.capacity = capacity
        self.pos = Record(path + ".pos", "<III")  # the oldest segment, the offset in it, dropped
        self._buf = bytearray(SLOT)
        self.dropped = 0
        self.count = 0  # frames queued
        self._len = 0  # length of the frame peek() returned
        try:
            os.mkdir(path)
        except OSError:
            pass  # there already
        ids = sorted(int(n) for n in os.listdir(path) if n.isdigit())
        got = self.pos.load()
        head = off = 0
        if got is not None:
            head, off, self.dropped = got
        while ids and ids[0] < head:  # replayed, then a power cut before it was deleted
            self._remove(ids.pop(0))
        if not ids or ids[0] != head:
            off = 0
        self.head = ids[0] if ids else head
        self.tail = ids[-1] if ids else head
        self.off = off
        self.size = 0  # bytes in the newest segment
        for i in ids:
            n, end, torn = self._scan(i, off if i == self.head else 0)
            self.count += n
            if i == self.head:
                self.hn = n  # frames left in the oldest segment
            if i == self.tail:  # a torn record at its end: append to a new segment instead
                self.size = _SEG if torn else end
        if not ids:
            self.hn = 0

    def __len__(self):
        return self.count

    def _name(self, i):
        return "%s/%d" % (self.path, i)

    def _remove(self, i):
        try:
            os.remove(self._name(i))
        except OSError:
            pass  # lost already

    def _scan(self, i, off):
        """(whole records from ``off``, the offset after them, torn) of segment ``i``; a torn or
        garbled record (FAT, a power cut mid-append) ends it and is counted as dropped."""
        n = 0
        b = self._buf
        try:
            with open(self._name(i), "rb") as f:
                while True:
                    f.seek(off)
                    got = f.readinto(b)
                    if not got:
                        return n, off, False
                    size = struct.unpack_from("<H", b)[0] if got >= 2 else SLOT
                    if size > SLOT - 2 or size + 2 > got:
                        print("peergrid: spool segment %d is torn at %d: dropped" % (i, off))
                        self.dropped += 1
                        return n, off, True
                    n += 1
                    off += 2 + size
        except OSError:
            return n, off, True

    def push(self, frame):
        """Queue a frame (raises SpoolError if it cannot be stored)."""
        n = len(frame) + 2
        if n > SLOT:
            raise SpoolError("frame of %d bytes does not fit a %d-byte record" % (n - 2, SLOT))
        if self.count >= self.capacity:
            if self.head == self.tail:
                self._roll()
            self._drop_head()
        if self.size + n > _SEG:
            self._roll()
        try:
            with open(self._name(self.tail), "ab") as f:
                f.write(struct.pack("<H", n - 2))
                f.write(frame)
        except OSError as e:
            raise SpoolError("cannot append to %s: %s" % (self._name(self.tail), e)) from None
        self.size += n
        self.count += 1
        if self.head == self.tail:
            self.hn += 1

    def _roll(self):
        self.tail += 1
        self.size = 0

    def _drop_head(self):
        """The oldest segment goes with the frames left in it (counted in ``dropped``)."""
        self.dropped += self.hn
        self.count -= self.hn
        self._next_head()

    def _next_head(self):
        self._remove(self.head)
        if self.head < self.tail:
            self.head += 1
            self.hn = self._scan(self.head, 0)[0]
        else:  # the queue is empty: the next frame starts a new segment
            self.head = self.tail = self.tail + 1
            self.size = self.hn = 0
        self.off = 0
        self.pos.save(self.head, 0, self.dropped)

    def peek(self):
        """The oldest queued frame, or None. A record that cannot be read (a segment torn or lost
        behind the count) ends its segment, counted as dropped: raising would stop the replay at
        the same record for good."""
        b = self._buf
        while self.count:
            if self.hn:
                try:
                    with open(self._name(self.head), "rb") as f:
                        f.seek(self.off)
                        got = f.readinto(b)
                except OSError:
                    got = 0
                size = struct.unpack_from("<H", b)[0] if got and got >= 2 else SLOT
                if size <= SLOT - 2 and size + 2 <= got:
                    self._len = size
                    return bytes(b[2 : 2 + size])
                print("peergrid: spool segment %d is unreadable at %d: dropped" % (self.head, self.off))
                self._drop_head()
            elif self.head < self.tail:
                self._next_head()
            else:  # the count and the segments disagree: the count goes
                self.count = 0
        return None

    def pop(self):
        """Forget the oldest frame, the one peek() returned (after the broker acknowledged it)."""
        if not self.count or not self.hn:
            return
        self.count -= 1
        self.hn -= 1
        self.off += 2 + self._len
        if self.hn:
            self.pos.save(self.head, self.off, self.dropped)
        else:  # the oldest segment is replayed: it goes
            self._next_head()
