"""A lean MQTT 3.1.1 publisher for the benchmarks: pre-built QoS 1 PUBLISH packets written to a
plain socket, PUBACKs counted by a reader thread, a bounded window of publishes in flight.

It stands in for many boards at once while taking as little of the machine's CPU as possible, so
the benchmarks measure the coordinator, not the publisher. ``python -m bench.mqttpub FRAMES PORT
[CLIENT_ID]`` publishes the pickled list of ``(topic, frame)`` pairs and exits once every one is
acknowledged by the broker.
"""

from __future__ import annotations

import pickle
import socket
import sys
import threading
from collections.abc import Sequence

WINDOW = 4000  # publishes in flight (sent, PUBACK not yet read); well below the 65,535 packet ids


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id: str, keepalive: int = 60) -> bytes:
    var = _str(b"MQTT") + bytes((4, 0x02)) + keepalive.to_bytes(2, "big") + _str(client_id.encode())
    return b"\x10" + _remaining(len(var)) + var


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """QoS 1 PUBLISH."""
    var = _str(topic.encode()) + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _remaining(len(var)) + var


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


def publish_all(host: str, port: int, frames: Sequence[tuple[str, bytes]], client_id: str) -> int:
    """Publish every frame at QoS 1; returns how many PUBACKs came back."""
    packets = [publish_packet(t, f, 1 + k % 65_535) for k, (t, f) in enumerate(frames)]
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(client_id))
    if _read_exact(sock, 4)[3] != 0:
        raise ConnectionError("broker refused the connection")
    acked = 0
    room = threading.Semaphore(WINDOW)

    def reader() -> None:
        nonlocal acked
        buf = b""
        while acked < len(packets):
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
            n = len(buf) // 4  # PUBACKs only: 0x40 0x02 id id
            acked += n
            buf = buf[n * 4 :]
            for _ in range(n):
                room.release()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    chunk: list[bytes] = []
    for p in packets:
        room.acquire()
        chunk.append(p)
        if len(chunk) == 200:
            sock.sendall(b"".join(chunk))
            chunk.clear()
    if chunk:
        sock.sendall(b"".join(chunk))
    t.join(timeout=120)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    return acked


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as f:
        frames = pickle.load(f)
    client_id = argv[2] if len(argv) > 2 else "bench-boards"
    acked = publish_all("127.0.0.1", int(argv[1]), frames, client_id)
    return 0 if acked == len(frames) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
