# A provisioned board's start: its settings from the bundle, its key on first boot, its network.
#
# The bundle (peergrid board bundle) puts board.json and settings.json on the filesystem. On the
# first boot the board generates its Ed25519 seed from the hardware RNG (keys.py: os.urandom is
# the ESP32's RNG), keeps it in key.bin and prints only the public key, which the operator
# enrols (peergrid board flash reads the line; peergrid board enroll registers it), and where
# the Wi-Fi and broker passwords are kept (credentials.py: NVS on an ESP32).
import json
import time

import credentials
import keys
from errors import FirmwareError

from protocol import crypto

PUBKEY_TAG = "peergrid-pubkey"


class ProvisionError(FirmwareError):
    code = "provision"


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        raise ProvisionError("%s is missing: flash the board's bundle" % path) from None
    except ValueError:
        raise ProvisionError("%s is not valid JSON: rebuild the bundle" % path) from None


def load():
    """(board config, settings), checked for what the runtime cannot start without."""
    cfg = load_json("board.json")
    settings = load_json("settings.json")
    for k in ("board", "grid", "coordinator_key", "broker"):
        if k not in settings:
            raise ProvisionError("settings.json has no %r: rebuild the bundle" % k)
    # the passwords are not in settings.json but in NVS (or secrets.json): credentials.py
    sec = credentials.load()
    if "broker_password" in sec:
        settings["broker"]["password"] = sec["broker_password"]
    if "wifi_password" in sec and settings.get("wifi"):
        settings["wifi"]["password"] = sec["wifi_password"]
    return cfg, settings


def first_boot():
    """Create the board key if there is none; print and return the public key (hex)."""
    seed, created = keys.load_or_create()
    pub = crypto.SigningKey(seed).public.hex()
    credentials.load()  # on an ESP32: the passwords move from secrets.json into NVS
    print(PUBKEY_TAG, pub, "new" if created else "kept", credentials.where())
    return pub


def network_up(settings, timeout_s=30):
    """Join the Wi-Fi named in settings (if any) and set the clock from NTP."""
    w = settings.get("wifi")
    if not w:
        return None  # wired, or a port without a radio
    import network

    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if not sta.isconnected():
        sta.connect(w["ssid"], w.get("password", ""))
        t0 = time.ticks_ms()
        while not sta.isconnected():
            if time.ticks_diff(time.ticks_ms(), t0) > timeout_s * 1000:
                raise ProvisionError("Wi-Fi %r not joined within %d s" % (w["ssid"], timeout_s))
            time.sleep_ms(200)
    try:
        import ntptime

        ntptime.settime()
    except Exception as e:  # readings say clock_unsynced until a later sync succeeds
        print("peergrid: no NTP time yet:", repr(e))
    return sta.ifconfig()[0]
