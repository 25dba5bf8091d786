# A SunSpec device's register map for the fake Modbus slave (fakes/modbus_rtu.py), laid out as the
# SunSpec Information Model specifies it: "SunS" at the base, then each model's id and length and
# its points, ended by 0xFFFF 0. ``models`` picks which of common (1), inverter (103), basic
# settings (121), immediate controls (123), storage (124), DER AC measurement (701), DER capacity
# (702), DER AC controls (704) and battery (802) the device has, in that order (a "DER-only"
# device: 1, 701, 702, 704, 802); the values are what a 5 kW hybrid inverter with a 3.3 kW
# battery would hold. ``at(slave, model, offset)`` is a point's register (offsets as the SunSpec
# model definitions count them, from the first register after id and length), for tests that
# read what the board wrote or change what the device reports.
_LEN = {1: 66, 103: 50, 121: 30, 123: 24, 124: 24, 701: 153, 702: 50, 704: 65, 802: 62}


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
        elif mid == 701:
            regs[d + 1] = 1  # St: on
            regs[d + 2] = 3  # InvSt: running
            regs[d + 3] = 1  # ConnSt: connected
            regs[d + 14] = 2300  # LNV 230.0 V
            regs[d + 16] = 50000  # Hz (uint32, low word) 50.000 Hz
            regs[d + 112] = -1  # V_SF
            regs[d + 113] = -3  # Hz_SF
            regs[d + 114] = 0  # W_SF: W at d + 8
        elif mid == 702:
            regs[d] = regs[d + 24] = wmax // 10  # WMaxRtg, WMax
            regs[d + 5] = regs[d + 29] = wmax // 10  # VAMaxRtg, VAMax
            regs[d + 8] = regs[d + 32] = wcha // 10  # WChaRteMaxRtg, WChaRteMax
            regs[d + 9] = regs[d + 33] = wcha // 10  # WDisChaRteMaxRtg, WDisChaRteMax
            regs[d + 43] = regs[d + 45] = 1  # W_SF, VA_SF: 10 W steps
        elif mid == 704:
            regs[d + 13] = 1000  # WMaxLimPct 100.0 % (WMaxLimPctEna at d + 12 off)
            regs[d + 51] = -3  # PF_SF
            regs[d + 52] = -1  # WMaxLimPct_SF: 0.1 %
            regs[d + 53] = 0  # WSet_SF: W (WSetEna d + 20, WSetMod d + 21, WSet d + 22..23)
            regs[d + 54] = -1  # WSetPct_SF
        elif mid == 802:
            regs[d + 1] = 1000  # WHRtg 10 kWh
            regs[d + 2] = regs[d + 3] = wcha  # WChaRteMax, WDisChaRteMax
            regs[d + 5] = 1000  # SoCMax 100.0 %
            regs[d + 6] = 100  # SoCMin 10.0 %
            regs[d + 9] = 500  # SoC 50.0 %
            regs[d + 14] = 6  # ChaSt: holding
            regs[d + 19] = 4  # Typ: lithium ion
            regs[d + 20] = 3  # State: connected
            regs[d + 51] = 1  # WHRtg_SF
            regs[d + 54] = -1  # SoC_SF: 0.1 %
        p = d + n
    regs[p] = 0xFFFF
    regs[p + 1] = 0


def at(slave, model, offset):
    return slave.models[model] + offset
