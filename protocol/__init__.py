"""The peergrid wire protocol: one definition, imported unchanged by the board and the coordinator.

Modules: ``messages`` (types, ids, fields), ``codec`` (canonical msgpack), ``topics`` (MQTT
layout), ``frame`` (signed frames), ``crypto`` (Ed25519 for both runtimes), ``errors``.
Kept import-light: the board imports only what it uses.
"""

PROTOCOL_VERSION = 1
