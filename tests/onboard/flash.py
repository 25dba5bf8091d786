# A NOR flash for tests on MicroPython: a block device (the extended interface LittleFS uses:
# readblocks/writeblocks with an offset, ioctl erase) in RAM that counts erases and bytes
# programmed, formatted as the ESP32 port formats its filesystem (LittleFS2, 4 KiB erase blocks,
# progsize 256).
import os

import vfs


class Flash:
    def __init__(self, blocks, block_size=4096):
        self.bs = block_size
        self.n = blocks
        self.data = bytearray(b"\xff" * (blocks * block_size))
        self.erases = 0
        self.progs = 0  # bytes programmed

    def readblocks(self, block, buf, off=0):
        a = block * self.bs + off
        buf[:] = memoryview(self.data)[a : a + len(buf)]

    def writeblocks(self, block, buf, off=None):
        if off is None:  # the simple interface: erase, then program the whole block
            self.ioctl(6, block)
            off = 0
        a = block * self.bs + off
        self.data[a : a + len(buf)] = buf
        self.progs += len(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase
            a = arg * self.bs
            self.data[a : a + self.bs] = b"\xff" * self.bs
            self.erases += 1
        return 0


def mount(blocks=256, where="/flash"):
    """A fresh LittleFS2 on a counted Flash, mounted at ``where`` and made the current directory."""
    dev = Flash(blocks)
    vfs.VfsLfs2.mkfs(dev, progsize=256)
    vfs.mount(vfs.VfsLfs2(dev, progsize=256), where)
    os.chdir(where)
    return dev
