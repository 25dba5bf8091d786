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


def network_up(settings, wdt, timeout_s=20):
    """Start joining the Wi-Fi named in settings (if any) and wait up to ``timeout_s`` for it,
    feeding the watchdog: the host names are looked up next, before the event loop starts. A
    board that has not joined by then starts anyway (its Wi-Fi task goes on trying, its link
    uses the cached addresses). The clock is set later, by the runtime's NTP task."""
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
                print("peergrid: Wi-Fi %r not joined within %d s" % (w["ssid"], timeout_s))
                return None
            time.sleep_ms(200)
            wdt.feed()
    return sta.ifconfig()[0]
