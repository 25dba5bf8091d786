"""Byte-level fakes of the metering front ends, for tests and the simulator.

Each fake speaks its chip's real protocol (Modbus RTU frames, SPI register transfers, DSMR
telegrams, S0 edges) and holds a simulated meter state that is settable in integer units,
so the simulator can feed its physics in and the real drivers read it out. The I/O paths
(``write``/``readinto``/``any``, SPI transfers, edges) do not allocate, so a test can
heap-lock a driver poll that runs against a fake. They run on CPython and MicroPython.
"""
