"""A stand-in ESP32 board on a pseudo-terminal, for the real ``mpremote`` and ``esptool``.

The host tools open the pty's slave (``/dev/pts/N``) as they open ``/dev/ttyUSB0``. Behind the
master the stand-in speaks what a board speaks on its UART:

- **MicroPython's REPL** (friendly and raw; raw-paste with flow control; Ctrl-A, Ctrl-B, Ctrl-C,
  Ctrl-D soft reboot). Code sent to the raw REPL executes on the real MicroPython unix port
  (``standin_agent.py``), in the board's filesystem directory, with what the unix port lacks
  provided by ``standin_shims.py``: a ROMFS partition, NVS, ``machine.reset()`` and the
  MicroPython version the board plays. ``machine.reset()`` boots the board: its ``main.py``
  runs (the firmware with the fake metering front end of firmware/fakes, on the unix port, as
  ``peergrid board run-virtual`` runs it) until the host interrupts it with Ctrl-C.
- **The ESP32 ROM bootloader's SLIP protocol** (what esptool speaks): SYNC, READ_REG/WRITE_REG
  over a register file in which the SPI peripheral runs flash commands (RDID: the flash id),
  the chip-detect magic word and the eFuse MAC, GET_SECURITY_INFO refused as an ESP32's ROM
  does, MEM_* (the flasher stub is "uploaded" and answers OHAI; from then on the stub's status
  format), SPI_ATTACH/SET_PARAMS, FLASH_BEGIN/DATA/END, FLASH_DEFL_* (zlib), SPI_FLASH_MD5,
  CHANGE_BAUDRATE. A real board is switched between the two by esptool's DTR/RTS reset; a pty
  has no modem lines, so the stand-in answers whichever protocol the host speaks (a SLIP frame
  starts with 0xC0, which REPL traffic never holds).

Faults, for the tests: no MicroPython (a blank flash prints only the ROM's complaint; installing
an image whose banner names a version gives the board that version), an old MicroPython, no
ROMFS partition, another chip (ESP8266's magic word), unplugged after N file writes during a
copy, one file garbled on its way into flash.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import tty
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.provision import virtual
from coordinator.provision.flash import micropython_exe

HERE = Path(__file__).resolve().parent
ESP32_MAGIC = 0x00F01D83
ESP8266_MAGIC = 0xFFF0C101
SPI = {ESP32_MAGIC: (0x3FF42000, 0x80), ESP8266_MAGIC: (0x60000200, 0x40)}  # base, W0 offset
EFUSE = 0x3FF5A000
UART_CLKDIV = 0x3FF40014
BANNER = re.compile(rb"MicroPython v(\d+)\.(\d+)\.(\d+)[^;\0]*; ([^\0\r\n]+)")
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
WINDOW = 128  # raw-paste flow-control window


@dataclass
class Personality:
    version: tuple[int, int, int] | None = (1, 25, 0)  # None: no MicroPython on the flash
    machine: str = "Generic ESP32 module with ESP32"
    romfs: int | None = 256 * 1024  # ROMFS partition 0 in bytes; 0: none; None: no ROMFS support
    magic: int = ESP32_MAGIC
    mac: str = "a0b765000001"
    flash_id: int = 0x1640C8  # manufacturer c8, device 4016: 4 MB
    unplug_after_writes: int | None = None  # the cable comes out during a copy
    garble: str | None = None  # a file whose first written chunk reaches the flash with a bit flipped
    heap: str = "1m"  # the firmware's .mpy files load into the heap when the bundle has no ROMFS image


@dataclass
class StandIn:
    root: Path
    p: Personality = field(default_factory=Personality)

    def __post_init__(self) -> None:
        self.fs = self.root / "fs"
        self.state = self.root / "state"
        for d in (self.fs, self.state, self.state / "lib"):
            d.mkdir(parents=True, exist_ok=True)
        for name in ("standin_agent.py", "standin_shims.py"):
            shutil.copyfile(HERE / name, self.state / "lib" / name)
        self.flash = bytearray(b"\xff" * (4 << 20))
        self.regs: dict[int, int] = {UART_CLKDIV: 347}  # 40 MHz crystal at 115200 baud
        mac = bytes.fromhex(self.p.mac)
        self.regs[EFUSE + 4] = int.from_bytes(mac[2:6], "big")
        self.regs[EFUSE + 8] = int.from_bytes(mac[0:2], "big")
        self.stub = False
        self._write_personality()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.pts = os.ttyname(self.slave)
        # the host tools open it by a stable name, as /dev/serial/by-id/... names a USB bridge (and
        # mpremote reads a /dev/pts/ path without timeouts: a silent board would hang it)
        self.port = str(self.root / "ttyUSB")
        Path(self.port).unlink(missing_ok=True)
        os.symlink(self.pts, self.port)
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.running = False  # the firmware (main.py) runs, not the REPL agent
        self.mode = "friendly"
        self.buf = bytearray()
        self.writes = 0
        self.garbling = False
        self.unplugged = False
        self.log = bytearray()  # everything the board printed while running its firmware
        self.execs: list[bytes] = []
        self._flash_op: tuple[int, int, zlib._Decompress | None] | None = None
        self.in_rom = False  # the host speaks to the ROM bootloader
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()
        threading.Thread(target=self._boot_loop, daemon=True).start()

    # -- the board's state -------------------------------------------------------------------

    def _write_personality(self) -> None:
        v = self.p.version
        doc = {
            "version": list(v) if v else None,
            "machine": self.p.machine,
            "romfs": self.p.romfs,
            "mac": self.p.mac,
        }
        (self.state / "board.json").write_text(json.dumps(doc))

    def _boot_loop(self) -> None:
        """A board with no firmware resets over and over, printing the ROM's complaint."""
        while not self.unplugged:
            if self.p.version is None and not self.in_rom:
                self._send(
                    b"ets Jun  8 2016 00:22:57\r\n"
                    b"rst:0x10 (RTCWDT_RTC_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
                    b"invalid header: 0xffffffff\r\n"
                )
            time.sleep(0.2)

    def _send(self, data: bytes) -> None:
        with self.lock:
            if not self.unplugged:
                try:
                    os.write(self.master, data)
                except OSError:
                    pass

    # -- processes on the unix port ----------------------------------------------------------

    def _env(self, fakes: Path | None = None) -> dict[str, str]:
        paths = [str(self.fs), str(self.state / "lib")] + ([str(fakes)] if fakes else []) + [".frozen"]
        return dict(os.environ, MICROPYPATH=":".join(paths))

    def _start_agent(self) -> None:
        self._stop_proc()
        self.proc = subprocess.Popen(
            [
                micropython_exe(),
                "-X",
                "heapsize=4m",
                str(self.state / "lib" / "standin_agent.py"),
                str(self.state),
            ],
            cwd=self.fs,
            env=self._env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.running = False
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()

    def _boot(self) -> None:
        """machine.reset(): the board boots and its main.py runs (the firmware, fake front end)."""
        self._stop_proc()
        lib = self.state / "fakes-lib"
        if not (lib / "fakes").exists():
            shutil.copytree(virtual.FAKES, lib / "fakes")
        shims = f"import standin_shims\nstandin_shims.install({str(self.state)!r}, False)\n"
        code = shims + virtual.board_code()
        rom = self.state / "romfs0.bin"
        if self.p.romfs and rom.exists() and rom.read_bytes()[:3] == b"\xd2\xcd\x31":
            argv = [sys.executable, "-m", "coordinator.provision.unixport", str(rom), "256k", code]
        else:
            argv = [micropython_exe(), "-X", f"heapsize={self.p.heap}", "-c", code]
        self.proc = subprocess.Popen(
            argv,
            cwd=self.fs,
            env=self._env(lib),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.running = True
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        while True:
            data = proc.stdout.read1(4096)
            if not data:
                break
            if self.running and proc is self.proc:
                self.log += data
            self._send(data)
        rc = proc.wait()
        if rc == 3 and proc is self.proc and not self.running:
            self._boot()

    def _stop_proc(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)

    # -- the UART ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        slip: bytearray | None = None
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            for c in data:
                if slip is not None:
                    if c == 0xC0:
                        if slip:
                            self._rom(bytes(slip).replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb"))
                            slip = None
                        continue
                    slip.append(c)
                elif c == 0xC0 and self.mode != "paste":
                    slip = bytearray()
                    self.in_rom = True
                else:
                    self._repl(c)
                if self.unplugged:
                    return

    def _repl(self, c: int) -> None:
        self.in_rom = False
        if self.p.version is None:  # no MicroPython: nothing answers (the boot loop prints on)
            return
        if self.mode == "paste":
            if c == 0x04:
                self._send(b"\x04")
                self.mode = "raw"
                self._exec(bytes(self.buf))
                self.buf.clear()
                return
            self.buf.append(c)
            self.pasted += 1
            if self.pasted % WINDOW == 0:
                self._send(b"\x01")
            return
        if c == 0x03:  # Ctrl-C: stop main.py; the board is at the REPL
            if self.running or self.proc is None:
                self._start_agent()
            self.buf.clear()
            if self.mode == "friendly":
                self._send(b"\r\nKeyboardInterrupt: \r\n>>> ")
            return
        if c == 0x01:
            self.mode = "raw"
            self.buf.clear()
            if self.proc is None or self.running:
                self._start_agent()
            self._send(b"\r\n" + RAW_PROMPT)
            return
        if c == 0x02:
            self.mode = "friendly"
            self._send(
                b"\r\nMicroPython v%d.%d.%d; " % self.p.version + self.p.machine.encode() + b"\r\n>>> "
            )
            return
        if self.mode != "raw":
            return
        if c == 0x04:
            if not self.buf:  # soft reboot: a fresh interpreter
                self._send(b"OK\r\nMPY: soft reboot\r\n")
                self._start_agent()
                self._send(RAW_PROMPT)
                return
            self._send(b"OK")
            self._exec(bytes(self.buf))
            self.buf.clear()
            return
        self.buf.append(c)
        if bytes(self.buf) == b"\x05A\x01":
            self.buf.clear()
            self.mode = "paste"
            self.pasted = 0
            self._send(b"R\x01" + struct.pack("<H", WINDOW))

    def _exec(self, code: bytes) -> None:
        self.execs.append(code)
        m = re.match(rb"f=open\('([^']+)','wb'\)", code)
        if m:
            self.garbling = os.path.normpath(m.group(1).decode().lstrip("/")) == self.p.garble
        if code.startswith(b"w("):
            self.writes += 1
            if self.p.unplug_after_writes is not None and self.writes > self.p.unplug_after_writes:
                self.unplug()
                return
            if self.garbling:
                data = bytearray(ast.literal_eval(code[2:-1].decode()))
                data[len(data) // 2] ^= 0x10
                code = b"w(" + repr(bytes(data)).encode() + b")"
                self.garbling = False
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"%d\n" % len(code) + code)
            self.proc.stdin.flush()
        except OSError:
            pass

    def unplug(self) -> None:
        """The USB cable comes out: the port vanishes, the board stops."""
        with self.lock:
            self.unplugged = True
            for fd in (self.master, self.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
            Path(self.port).unlink(missing_ok=True)
        self._stop_proc()

    def close(self) -> None:
        if not self.unplugged:
            self.unplug()

    # -- the ROM bootloader ------------------------------------------------------------------

    def _reply(self, op: int, val: int = 0, data: bytes = b"", ok: bool = True, err: int = 0) -> None:
        status = (b"\x00\x00" if ok else bytes([1, err])) + (b"" if self.stub else b"\x00\x00")
        body = struct.pack("<BBHI", 1, op, len(data) + len(status), val) + data + status
        self._send(b"\xc0" + body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0")

    def _rom(self, pkt: bytes) -> None:
        if len(pkt) < 8 or pkt[0] != 0:
            return
        _, op, size, _chk = struct.unpack("<BBHI", pkt[:8])
        data = pkt[8 : 8 + size]
        if op == 0x08:  # SYNC: the ROM answers eight times
            for _ in range(8):
                self._reply(op, 0 if self.stub else 0x20120707)
        elif op == 0x0A:  # READ_REG
            (addr,) = struct.unpack("<I", data[:4])
            self._reply(op, self.p.magic if addr == 0x40001000 else self.regs.get(addr, 0))
        elif op == 0x09:  # WRITE_REG, possibly several (addr, value, mask, delay)
            for i in range(0, len(data) - 15, 16):
                addr, value, mask, _ = struct.unpack("<IIII", data[i : i + 16])
                self.regs[addr] = (self.regs.get(addr, 0) & ~mask) | (value & mask)
                self._spi(addr)
            self._reply(op)
        elif op == 0x14:  # GET_SECURITY_INFO: not in an ESP32's ROM
            self._reply(op, ok=False, err=0x05)
        elif op in (0x05, 0x07, 0x0D, 0x0B, 0x0F):  # MEM_BEGIN/DATA, SPI_ATTACH/SET_PARAMS, baud
            self._reply(op)
        elif op == 0x06:  # MEM_END: the uploaded flasher stub starts
            self._reply(op)
            if struct.unpack("<II", data[:8])[0] == 0:
                self.stub = True
                self._send(b"\xc0OHAI\xc0")
        elif op in (0x02, 0x10):  # FLASH_BEGIN / FLASH_DEFL_BEGIN: erase, then blocks follow
            _, _, _, offset = struct.unpack("<IIII", data[:16])
            self._flash_op = (offset, 0, zlib.decompressobj() if op == 0x10 else None)
            self._reply(op)
        elif op in (0x03, 0x11):  # FLASH_DATA / FLASH_DEFL_DATA
            n = struct.unpack("<I", data[:4])[0]
            block = data[16 : 16 + n]
            assert self._flash_op is not None
            offset, done, z = self._flash_op
            raw = z.decompress(block) if z is not None else block
            self.flash[offset + done : offset + done + len(raw)] = raw
            self._flash_op = (offset, done + len(raw), z)
            self._reply(op)
        elif op in (0x04, 0x12):  # FLASH_END / FLASH_DEFL_END
            self._reply(op)
            self._installed()
        elif op == 0x13:  # SPI_FLASH_MD5
            addr, size = struct.unpack("<II", data[:8])
            md5 = hashlib.md5(bytes(self.flash[addr : addr + size]))
            self._reply(op, data=md5.digest() if self.stub else md5.hexdigest().encode())
        else:
            self._reply(op, ok=False, err=0x05)

    def _spi(self, addr: int) -> None:
        base, w0 = SPI.get(self.p.magic, SPI[ESP32_MAGIC])
        usr = 1 << 18
        if addr == base and self.regs[addr] & usr:
            cmd = self.regs.get(base + 0x24, 0) & 0xFF
            self.regs[base + w0] = self.p.flash_id if cmd == 0x9F else 0
            self.regs[addr] &= ~usr

    def _installed(self) -> None:
        """An image was written: the board now runs the MicroPython its banner names."""
        m = BANNER.search(bytes(self.flash))
        if m:
            self.p.version = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
            self.p.machine = m.group(4).decode()
            self._write_personality()
            self.mode = "friendly"
