# The Wi-Fi and broker passwords, kept apart from settings.json and the board key.
#
# The bundle carries them in secrets.json. On an ESP32 the first load (provision.first_boot, or
# any boot that finds the file) moves them into the NVS partition (esp32.NVS, namespace
# "peergrid") and deletes the file: they are then in no file of the board's filesystem, so not
# beside key.bin, not in a copy of the filesystem (mpremote fs cp, a dump of the VFS partition)
# and not in what a later flash reads back. A port without esp32.NVS (the unix port) keeps the
# file. NVS is not encrypted unless the chip's flash encryption is on (docs/provisioning.md).
import json
import os

from errors import FirmwareError

FILE = "secrets.json"
NAMESPACE = "peergrid"
KEYS = ("broker_password", "wifi_password")  # NVS key names: at most 15 characters
MAX = 127  # bytes of one secret (a WPA2 passphrase is at most 63)


class CredentialsError(FirmwareError):
    code = "credentials"


def _nvs():
    try:
        import esp32
    except ImportError:
        return None
    return esp32.NVS(NAMESPACE)


def _read(path):
    try:
        with open(path) as f:
            s = json.load(f)
    except OSError:
        return None
    except ValueError:
        raise CredentialsError("%s is not valid JSON: rebuild the bundle" % path) from None
    if not isinstance(s, dict):
        raise CredentialsError("%s is not an object: rebuild the bundle" % path)
    for k, v in s.items():
        if k not in KEYS or not isinstance(v, str) or len(v.encode()) > MAX:
            raise CredentialsError("%s: %r is not a known secret of at most %d bytes" % (path, k, MAX))
    return s


def where(path=FILE):
    """Where the secrets are kept now: "file", "nvs" or "none"."""
    if _read(path) is not None:
        return "file"
    return "none" if _nvs() is None else "nvs"


def load(path=FILE):
    """The secrets given to this board ({name: text}); moves a secrets file into NVS first."""
    s = _read(path)
    nvs = _nvs()
    if nvs is None:
        return s or {}
    if s is not None:  # a new bundle: its secrets replace the stored ones
        for k in KEYS:
            if k in s:
                nvs.set_blob(k, s[k].encode())
            else:
                try:
                    nvs.erase_key(k)
                except OSError:
                    pass
        nvs.commit()
        os.remove(path)
        return s
    out = {}
    buf = bytearray(MAX)
    for k in KEYS:
        try:
            n = nvs.get_blob(k, buf)
        except OSError:  # ENOENT: not given to this board
            continue
        out[k] = bytes(buf[:n]).decode()
    return out
