# A SunSpec device's register map for the fake Modbus slave (fakes/modbus_rtu.py), laid out as the
# SunSpec Information Model specifies it: "SunS" at the base, then each model's id and length and
# its points, ended by 0xFFFF 0. ``models`` picks which of common (1), inverter (103), basic
# settings (121), immediate controls (123) and storage (124) the device has; the values are what a
# 5 kW hybrid inverter with a 3.3 kW battery would hold. ``at(slave, model, offset)`` is a point's
# register, for tests that read what the board wrote or change what the device reports.
_LEN = {1: 66, 103: 50, 121: 30, 123: 24, 124: 24}


def _text(regs, r, s, n):
    b = s.encode() + bytes(2 * n)
    for i in range(n):
        regs[r + i] = (b[2 * i] << 8) | b[2 * i + 1]


def load(slave, models=(1, 103, 121, 123, 124), base=40000, wmax=5000, wcha=3300):
    regs = slave.regs
    regs[base] = 0x5375
    regs[base + 1] = 0x6E53
    p = base + 2
    slave.models = {}
    for mid in models:
        n = _LEN[mid]
        regs[p] = mid
        regs[p + 1] = n
        d = p + 2
        for i in range(n):
            regs[d + i] = 0
        slave.models[mid] = d
        if mid == 1:
            _text(regs, d, "peergrid", 16)
            _text(regs, d + 16, "fake-hybrid", 16)
        elif mid == 103:
            regs[d + 13] = 0  # W_SF
        elif mid == 121:
            regs[d] = wmax // 10
            regs[d + 20] = 1  # WMax_SF: 10 W steps
        elif mid == 123:
            regs[d + 3] = 10000  # WMaxLimPct 100.00 %
            regs[d + 21] = -2  # WMaxLimPct_SF: 0.01 %
        elif mid == 124:
            regs[d] = wcha
            regs[d + 6] = 500  # ChaState 50.0 %
            regs[d + 16] = 0  # WChaMax_SF
            regs[d + 20] = -1  # ChaState_SF: 0.1 %
            regs[d + 23] = -1  # InOutWRte_SF: 0.1 %
        p = d + n
    regs[p] = 0xFFFF
    regs[p + 1] = 0


def at(slave, model, offset):
    return slave.models[model] + offset
