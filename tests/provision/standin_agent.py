# The MicroPython side of the stand-in board (tests/provision/standin.py): runs on the real unix
# port in the board's filesystem directory and executes what the raw REPL receives.
#
# It reads "<length>\n<code>" from stdin, executes the code in one namespace kept for the session
# (as a board's raw REPL does: mpremote's file writes span several executions), and writes what a
# board's raw REPL writes back: the output, \x04, the error's traceback, \x04, ">".
#
# What the unix port lacks and an ESP32 has is provided by tests/provision/standin_shims.py
# (imported first): the ROMFS partition (vfs.rom_ioctl), NVS (esp32.NVS), machine.reset(),
# and sys.implementation/sys.platform of the MicroPython the stand-in plays.
import sys

import standin_shims

standin_shims.install(sys.argv[1])

_rd = sys.stdin.buffer
_out = sys.stdout


def _read(n):
    b = b""
    while len(b) < n:
        c = _rd.read(n - len(b))
        if not c:
            return None
        b += c
    return b


def main():
    g = {"__name__": "__main__", "open": standin_shims.board_open}
    while True:
        line = _rd.readline()
        if not line:
            return
        code = _read(int(line))
        if code is None:
            return
        err = None
        try:
            exec(code, g)
        except standin_shims.Reset:
            _out.write("\x04\x04")
            sys.exit(3)  # the stand-in boots the board's main.py
        except BaseException as e:  # noqa: B036 -- a board reports every exception, even SystemExit
            err = e
        _out.write("\x04")
        if err is not None:
            sys.print_exception(err, _out)
        _out.write("\x04>")


main()
