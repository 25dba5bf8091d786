# Over-the-air updates of the board's code: a manifest signed by the operator's release key
# (protocol Update: version, size, SHA-256, board type, minimum version), the image (a ROMFS image
# of the compiled modules) in chunks written to the inactive half of the ROMFS partition, checked
# (size, digest, ROMFS header) and switched to in the slot record that main.py reads at boot
# before any code of the image runs. The new code runs on trial: it confirms itself once it has
# reconnected and had a reading acknowledged (app.py); a boot that never did is rolled back by
# the next one (main.py). Progress is persisted per 4 KiB block, so a power cut mid-download
# resumes where it was and never touches the running slot.
#
# ``rom``: the partition (hw.rom(): the ESP32's ROMFS partition, a file on the unix port) with
# ``size``, ``erase(off)`` (the 4 KiB block at off), ``write(off, buf)`` and ``readinto(off, buf)``.
import hashlib
import json
import os

from persist import Record

from protocol import crypto, frame, messages, topics

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc,no-untyped-def]
        return x


# True for mypy only (pyproject: always_true): a board's compiler drops the block whole
TYPING = const(0)
if TYPING:
    from typing import Any  # noqa: F401  (used in type comments)

SLOTS = "ota.json"  # the slot record: main.py's loader reads it at boot
_MAN = "upd.bin"  # the manifest frame of the download under way (checked again on resume)
_BLOCK = const(4096)


def read_slots():
    """The slot record: run (the slot to run), good (the confirmed one), tries (trial boots
    started), fw/good_fw (their versions), digest (the run slot's image), bad (an image that was
    rolled back), rolled (its version, until reported). None on a board never updated."""
    try:
        with open(SLOTS) as f:
            st = json.load(f)
        return st if isinstance(st, dict) else None
    except (OSError, ValueError):
        return None


def write_slots(st):
    """Written whole, then renamed over the old record: a power cut leaves one or the other."""
    with open(SLOTS + ".new", "w") as f:
        json.dump(st, f)
    os.rename(SLOTS + ".new", SLOTS)


def version(s):
    """(major, minor, patch) of "1.2.3"; None when it is not one."""
    p = s.split(".")
    if len(p) != 3:
        return None
    out = []
    for x in p:
        if not x or not x.isdigit() or len(x) > 5:
            return None
        out.append(int(x))
    return tuple(out)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


class Updater:
    def __init__(self, board, grid, board_type, fw, release_key, rom):
        self.board = board
        self.grid = grid
        self.type = board_type
        self.fw = fw  # the running version
        self.key = crypto.Verifier(release_key) if release_key else None
        self.rom = rom
        self.topic = topics.board_topic(grid, board, "update")
        self.t_state = topics.board_topic(grid, board, "fwstate")
        self.man = None  # type: Any  # the accepted Update being downloaded
        self.pos = 0  # bytes written to the inactive slot
        self.rec = Record("upd", "<I")
        self.last = ""  # the version of the last manifest looked at (for reports)
        self.off = 0  # read back so far (check_step)
        self.h = None  # type: Any
        self.refused = 0
        st = read_slots() or {}
        self.run = st.get("run", 0)
        self.bad = st.get("bad")

    def _verifier_for(self, msg):
        return self.key

    def offer(self, topic, payload):
        """Check a manifest frame. Returns "" when the download starts or goes on (``man``,
        ``pos``), None when there is nothing to do (the running version, or the one under way),
        or the reason it is refused (counted; the old code runs on)."""
        if self.key is None:
            return self._no("no release key: rebuild the bundle")
        if self.rom is None:
            return self._no("no ROMFS partition for updates")
        self.last = ""
        try:
            m = frame.open_frame(topic, payload, self._verifier_for)
        except Exception as e:  # ProtocolError: forged (bad signature), malformed, wrong topic
            try:  # the version it claims, for the report only
                self.last = getattr(messages.decode(bytes(frame.split(payload)[0])), "version", "")
            except Exception:
                pass
            return self._no(str(e))
        if not isinstance(m, messages.Update) or topic != self.topic:
            return self._no("not an update for this board")
        self.last = m.version
        if m.board_type != self.type:
            return self._no("image for %s, not %s" % (m.board_type, self.type))
        new, run = version(m.version), version(self.fw)
        if new is None:
            return self._no("bad version %s" % m.version)
        if m.version == self.fw:
            return None  # running it (the retained manifest after the update)
        if self.man is not None and self.man.digest == m.digest:
            return None
        if m.digest.hex() == self.bad:
            return self._no("%s was rolled back before" % m.version)
        if run is not None and new < run and not m.downgrade:
            return self._no("downgrade %s to %s refused" % (self.fw, m.version))
        low = version(m.min_fw) if m.min_fw else None
        if m.min_fw and (low is None or run is None or run < low):
            return self._no("needs %s or later" % m.min_fw)
        if not 256 <= m.chunk <= 1536 or not 0 < m.size <= self.rom.size // 2:
            return self._no("size %d or chunk %d does not fit" % (m.size, m.chunk))
        resume = 0
        try:
            with open(_MAN, "rb") as f:
                if f.read() == payload:  # the same manifest: resume after a power cut
                    got = self.rec.load()
                    resume = got[0] if got else 0
        except OSError:
            pass
        if not resume:
            with open(_MAN, "wb") as f:
                f.write(payload)
        self.man = m
        # from the start of the block being written when the power went: it is erased again
        self.pos = min(resume - resume % _BLOCK, m.size)
        return ""

    def _no(self, why):
        self.refused += 1
        return why[:48]

    def next_chunk(self):
        """(index, topic) of the next chunk to fetch; None when the image is whole."""
        m = self.man
        if m is None or self.pos >= m.size:
            return None
        n = self.pos // m.chunk
        return n, topics.chunk_topic(self.grid, m.digest, n)

    def write(self, n, data):
        """Write chunk ``n`` into the inactive slot. "" when written, else why the image is
        refused (the download is dropped)."""
        m = self.man
        want = min(m.chunk, m.size - n * m.chunk)
        if n * m.chunk != self.pos or len(data) != want:
            return self.drop("image truncated: chunk %d has %d bytes, not %d" % (n, len(data), want))
        base = (1 - self.run) * (self.rom.size // 2)
        off = self.pos
        end = off + len(data)
        b = off - off % _BLOCK
        while b < end:  # erase each block as the image reaches it
            if b >= off:
                self.rom.erase(base + b)
            b += _BLOCK
        self.rom.write(base + off, data)
        self.pos = end
        if end % _BLOCK == 0 or end == m.size:  # persisted per block: a power cut resumes here
            self.rec.save(end)
        return ""

    def drop(self, why):
        """Give up the download under way (its slot is left as it is: the running code is not
        touched); returns ``why``, counted."""
        self._clear()
        return self._no(why)

    def _clear(self):
        if self.man is not None:
            self.last = self.man.version
        self.man = None
        self.pos = 0
        for f in (_MAN, "upd.a", "upd.b"):
            _remove(f)

    def check_step(self, buf):
        """One piece (``len(buf)`` bytes, a preallocated buffer) of reading the image back from
        the inactive slot: None while more is to come, "" when it is whole and good (SHA-256 as
        the manifest's, a ROMFS header), else why it is refused (the download is dropped). Starts
        over when ``off`` is set to 0."""
        m = self.man
        if self.off == 0:
            self.h = hashlib.sha256()
        base = (1 - self.run) * (self.rom.size // 2)
        n = min(len(buf), m.size - self.off)
        mv = memoryview(buf)[:n]
        self.rom.readinto(base + self.off, mv)
        if self.off == 0 and bytes(mv[:3]) != b"\xd2\xcd\x31":
            return self.drop("not a ROMFS image")
        self.h.update(mv)
        self.off += n
        if self.off < m.size:
            return None
        self.h, d = None, self.h.digest()
        if d != m.digest:
            return self.drop("image corrupt: SHA-256 differs")
        return ""

    def switch(self):
        """Make the checked image the one the next boot runs, on trial (main.py counts the
        tries and rolls back a boot that never confirmed)."""
        m = self.man
        st = read_slots() or {"run": 0, "good": 0, "fw": self.fw}
        write_slots({"run": 1 - self.run, "good": self.run, "tries": 0, "fw": m.version,
                     "good_fw": self.fw, "digest": m.digest.hex(), "bad": st.get("bad")})
        for f in ("boots.a", "boots.b"):  # new code starts with no failed boots (no safe mode)
            _remove(f)
        self._clear()

    def report(self, state, why, now, ver=None):
        """(topic, signed UpdateState frame) for the link to publish."""
        m = self.man
        s = messages.UpdateState(board=self.board, ts=now, version=ver or (m.version if m else self.last),
                                 state=state, reason=why[:48], got=self.pos, fw=self.fw)
        return self.t_state, s

    def pending(self):
        return self.man.version if self.man is not None else None


def confirm():
    """The running trial image reconnected and had a reading acknowledged: it stays. Returns
    its version, or None when the board was not on trial."""
    st = read_slots()
    if not st or st.get("run") == st.get("good"):
        return None
    st["good"] = st["run"]
    st["good_fw"] = st.get("fw")
    st["tries"] = 0
    write_slots(st)
    return st.get("fw")


def rolled_back():
    """The version rolled back at this boot (main.py), once: None when there was none."""
    st = read_slots()
    if not st or not st.get("rolled"):
        return None
    v = st.pop("rolled")
    write_slots(st)
    return v


def trial():
    st = read_slots()
    return bool(st) and st.get("run") != st.get("good")
