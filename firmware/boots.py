# Boot safety: boots in a row that never became healthy, persisted (persist.Record). A boot
# counts as failed until the runtime calls ``healthy()`` (a reading acknowledged by the broker,
# or ten minutes of running); main.py waits ``backoff_s()`` before the reset after a crash
# (10 s doubling to 10 min), and from ``SAFE_AFTER`` failed boots in a row the board starts in
# safe mode: it meters and keeps its registers, reports its status and otherwise only waits (for
# a fixed firmware). One record write at boot and one when healthy; none while it runs.
from persist import Record

SAFE_AFTER = 5


class Boots:
    def __init__(self, path="boots"):
        self.rec = Record(path, "<H")
        got = self.rec.load()
        self.failed = got[0] if got is not None else 0  # before this boot
        self.safe = self.failed >= SAFE_AFTER
        self.ok = False
        self.rec.save(min(self.failed + 1, 0xFFFF))  # this one, until it is healthy

    def healthy(self):
        """The boot went well: the count starts again. Not in safe mode, which lasts until new
        firmware (or a flashed bundle) removes the record."""
        if not self.ok and not self.safe:
            self.ok = True
            self.rec.save(0)

    def backoff_s(self):
        return min(10 << min(self.failed, 6), 600)
