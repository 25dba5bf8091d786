"""Provisioning and operations: board bundles, flashing, enrolment, broker security.

- ``bundle``: a board's filesystem image (compiled firmware and protocol, board file, settings,
  secrets, the broker's CA certificate), byte-identical for the same inputs;
- ``flash``: copy a bundle with ``mpremote`` (or into a directory run by the MicroPython unix
  port) and read the public key the board generates on first boot;
- ``pipeline``: one board from the box to its first reading (``ports``: finding the serial
  port; ``chip``: esptool, the chip and MicroPython's image; ``device``: mpremote, the version,
  copy, read-back of every digest, first boot, reset); ``fleet``: a batch of boards;
- ``virtual``: a board without hardware, the firmware on the unix port as a process;
- ``enrol``: register, rotate and replace board keys in the ledger, keeping every old key;
- ``pki`` and ``brokerconf``: a local CA, the broker's certificate, per-board credentials and
  ACLs, and the Mosquitto configuration that uses them.
"""
