# The board's Ed25519 key: generated on first boot from the hardware RNG (os.urandom is the
# ESP32's RNG), kept in `key.bin`, never sent anywhere. Only the public key leaves the board.
import os

from errors import FirmwareError


class KeyFileError(FirmwareError):
    code = "key"


def load_or_create(path="key.bin"):
    """Return (seed, created). A damaged key file is an error, never silently replaced."""
    try:
        with open(path, "rb") as f:
            seed = f.read()
    except OSError:
        seed = os.urandom(32)
        with open(path, "wb") as f:
            f.write(seed)
        return seed, True
    if len(seed) != 32:
        raise KeyFileError("%s holds %d bytes, not a 32-byte key" % (path, len(seed)))
    return seed, False
