# The board's network seen from the event loop, which nothing may hold for more than a few ms:
# host names resolved before the loop starts (DNS cannot be bounded on a board), the clock set
# from NTP over a non-blocking socket, Wi-Fi rejoined while the loop runs.
#
# A name is resolved once at boot and its address kept in ``dns.txt`` (written only when it
# changed): a board whose DNS is down at boot still reaches the broker at its last address.
# A numeric address (what ``peergrid board bundle`` writes by default) needs none of this.
import asyncio
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc,no-untyped-def]
        return x


_NTP_DELTA = const(2_208_988_800)  # seconds from 1900-01-01 (NTP) to 1970-01-01
_CACHE = "dns.txt"


def numeric(host):
    """True for a dotted-quad IPv4 address (used as it is: no DNS)."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


def _cached():
    out = {}
    try:
        with open(_CACHE) as f:
            for line in f:
                kv = line.split()
                if len(kv) == 2:
                    out[kv[0]] = kv[1]
    except OSError:
        pass
    return out


def address(host):
    """The numeric address of ``host``, or None. Called only before the event loop starts: a
    name is looked up (blocking, as long as the network stack takes) and the answer cached on
    flash; when the lookup fails, the cached address is used."""
    if numeric(host):
        return host
    import socket

    cache = _cached()
    try:
        a = socket.getaddrinfo(host, 0)[0][-1]
        # the ESP32 port gives ("a.b.c.d", port), the unix port a raw sockaddr_in
        ip = a[0] if isinstance(a, tuple) else "%d.%d.%d.%d" % (a[4], a[5], a[6], a[7])
    except (OSError, IndexError) as e:
        ip = cache.get(host)
        print("peergrid: cannot resolve %s (%r): cached address %s" % (host, e, ip))
        return ip
    if cache.get(host) != ip:
        cache[host] = ip
        with open(_CACHE, "w") as f:
            for k in cache:
                f.write("%s %s\n" % (k, cache[k]))
    return ip


async def ntp_time(ip, port=123, timeout_ms=1000):
    """Unix seconds from the NTP server at the numeric address ``ip``, or None when it did not
    answer within ``timeout_ms`` (the wait yields to the loop every 20 ms)."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        q = bytearray(48)
        q[0] = 0x1B  # version 3, client
        s.sendto(q, socket.getaddrinfo(ip, port)[0][-1])  # numeric: no DNS
        for _ in range(timeout_ms // 20):
            await asyncio.sleep_ms(20)
            try:
                r = s.recv(48)
            except OSError:  # nothing yet (EAGAIN), or the port is unreachable
                continue
            # a server's answer (mode 4) from a synchronised one (stratum 1-15)
            if len(r) == 48 and r[0] & 7 == 4 and 0 < r[1] < 16:
                t = struct.unpack_from("!I", r, 40)[0]
                if t:
                    return t - _NTP_DELTA
        return None
    finally:
        s.close()
