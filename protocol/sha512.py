"""SHA-512 of a sequence of byte strings, on CPython and on MicroPython.

``sha512(a, b, c)`` is the digest of ``a + b + c`` without building the concatenation. Where
``hashlib`` has sha512 (CPython, some MicroPython ports) it is used; otherwise the viper
implementation in ``protocol._sha512_viper`` is imported on first use, or on a port without
viper (the WebAssembly port of tests/mpy32.py) the plain-Python ``protocol._sha512_pure``.
"""

try:
    from hashlib import sha512 as _hashlib_sha512
except ImportError:  # MicroPython port without sha512
    _hashlib_sha512 = None  # type: ignore[assignment]

_fallback = []  # type: list[object]  # [viper sha512] once imported


def _viper_sha512():  # type: () -> object
    if not _fallback:
        # __import__ keeps mypy from following into the viper-only module.
        try:
            mod = __import__("protocol._sha512_viper", None, None, ("sha512",))
        except ImportError:  # no viper (e.g. the WebAssembly port): plain Python
            mod = __import__("protocol._sha512_pure", None, None, ("sha512",))
        _fallback.append(mod.sha512)
    return _fallback[0]


def sha512(*parts: bytes) -> bytes:
    """SHA-512 digest (64 bytes) of the concatenation of ``parts``."""
    if _hashlib_sha512 is not None:
        h = _hashlib_sha512()
        for part in parts:
            h.update(part)
        return h.digest()
    return _viper_sha512()(*parts)
