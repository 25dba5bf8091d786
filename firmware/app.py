# The board runtime: metering, signed readings, the MQTT link with store-and-forward, orders,
# status, the clock (NTP), Wi-Fi and the watchdog, as asyncio tasks. Nothing may hold the event
# loop for more than a few ms: front ends and Modbus replies are awaited, NTP is a non-blocking
# socket, host names are resolved before the loop starts (net.py). Everything board-specific
# comes from the board file (compact JSON) and settings (ids, broker, NTP, Wi-Fi, coordinator
# key); hardware comes from `hw` (real buses on an ESP32, fakes in tests and the simulator) and
# time from `clock`. In safe mode (boots.py: repeated failed boots) only the metering and a link
# that reports status (and takes an update) run. Updates over the air: ota.py, the updating task.
import asyncio
import gc
import json

import keys
import net
import ota
from meter import Meter, build
from mqtt import MQTTClient, MqttError
from orders import Limits, OrderHandler
from registers import Registers
from spool import Spool

from protocol import crypto, frame, messages, topics

try:
    from micropython import const
except ImportError:  # CPython (the simulator)

    def const(x):  # type: ignore[misc,no-untyped-def]
        return x


FW_VERSION = "0.2.0"
# Board seconds a task may take beyond its own period before the watchdog counts it stuck: more
# than the longest wait it makes without showing progress (a session's set-up: connect, CONNACK,
# SUBACK and two PUBACKs at 10 s each; a reading: Modbus reads, signature, a PUBACK, a flash write)
_SLACK = const(120)


class Board:
    def __init__(self, cfg, settings, hw, clock, boots=None):
        self.cfg = cfg
        self.hw = hw
        self.clock = clock
        self.boots = boots  # boots.Boots (None: not counted, as in tests and the simulator)
        self.safe = boots is not None and boots.safe
        self.id = settings["board"]
        self.grid = settings["grid"]
        if cfg.get("sha512") == "pure":  # the board file's choice: plain Python, no native code
            from protocol import _sha512_pure, sha512

            sha512._fallback[:] = [_sha512_pure.sha512]
        seed, created = keys.load_or_create()
        self.key = crypto.SigningKey(seed)
        if created:
            print("peergrid: new board key", self.key.public.hex())
        # the registers refuse counter steps beyond 2 x the largest of the board file's limits (a
        # fuse carries more than its rating for a while), 100 kW without limits
        lim = cfg.get("limits") or {}
        self.regs = Registers("regs", cfg.get("save_s", 300), cfg.get("save_mwh", 50_000),
                              2 * max(lim.get("import_w", 0), lim.get("export_w", 0)) or 100_000)
        self.spool = Spool("spool", cfg.get("spool", 1000))
        fe = cfg["frontend"]
        self.meter = Meter(build(fe, hw), self.regs)
        self.act = hw.actuators(cfg)
        coord = crypto.Verifier(bytes.fromhex(settings["coordinator_key"]))
        self.orders = OrderHandler(self.id, self.grid, coord, Limits(cfg), self.act, self.regs,
                                   self.key, cfg.get("interval_s", 900))
        b = settings["broker"]
        # addresses now, before the loop: a name's lookup cannot be bounded (net.py)
        self.host = b["host"]
        ip = net.address(b["host"])
        self.client = MQTTClient(self.id, ip, b.get("port", 1883), b.get("user"),
                                 b.get("password"), b.get("keepalive", 60), hw.tls(b))
        ntp = settings.get("ntp") or {}  # default: the coordinator's host (the broker's)
        self.ntp_ip = ip if "host" not in ntp else net.address(ntp["host"])
        self.ntp_port = ntp.get("port", 123)
        self.wifi = settings.get("wifi")
        self.sta = hw.wlan(settings)
        self.rejoins = 0  # Wi-Fi rejoins started by the Wi-Fi task
        self.reset_cause = hw.reset_cause()
        self.bat = None  # (state of charge, power) of the battery inverter, or None
        self.client.set_callback(self._on_message)
        self.t_reading = topics.board_topic(self.grid, self.id, "reading")
        self.t_status = topics.board_topic(self.grid, self.id, "status")
        self.t_order = topics.board_topic(self.grid, self.id, "order")
        # over-the-air updates (ota.py): manifests signed by the release key, chunks on t_fw
        self.t_update = topics.board_topic(self.grid, self.id, "update")
        self.t_fw = "peergrid/%s/fw/" % self.grid
        rk = settings.get("release_key")
        self.up = ota.Updater(self.id, self.grid, cfg.get("type", "esp32"), FW_VERSION,
                              bytes.fromhex(rk) if rk else None, hw.rom() if rk else None)
        self.manifest = None  # the latest manifest frame received, not yet looked at
        self.chunk = None  # (topic, payload) of a chunk received
        self.switched = None  # the version switched to, until the reboot
        self.reboot = False  # stopped to run new code
        self.trial = ota.trial()  # new code, until it confirms itself
        self.rolled = (ota.read_slots() or {}).get("rolled")  # rolled back at this boot
        self.inbox = []  # order frames waiting to be verified
        self.outbox = []  # (topic, frame) acks to send
        self.sent = 0
        self.errors = 0
        self.started = clock.now()
        self.stop = False
        # the watchdog: fed by the metering task only while the readings and the link task each
        # showed progress by its deadline here (board time; moved with the clock when physics()
        # sets it, the only place a board's clock is set after boot)
        self.due = [self.started + _SLACK, self.started + _SLACK]
        self.wdt = hw.wdt()

    # -- readings ---------------------------------------------------------------------------

    def reading(self, now):
        """The signed reading frame at board time ``now``, with the battery inverter's state as
        the readings task last read it (``bat``)."""
        m = self.meter
        flags = messages.F_FRONTEND_FAULT if m.fault or self.regs.fault else 0
        self.regs.fault = False  # a refused counter step is flagged on one reading
        if self.regs.aligned:
            flags |= messages.F_ALIGNED
            self.regs.aligned = False
        if not self.clock.synced:
            flags |= messages.F_CLOCK_UNSYNCED
        bat = self.bat
        r = messages.Reading(board=self.id, seq=self.regs.next_seq(now), ts=now,
                             e_imp=self.regs.e_imp, e_exp=self.regs.e_exp, p=m.p_w, u=m.u_mv,
                             bat_soc=bat[0] if bat else None, bat_p=bat[1] if bat else None,
                             flags=flags)
        return frame.seal(r, self.t_reading, self.key)

    async def _send_reading(self, fr):
        if not len(self.spool) and self.client.connected:
            try:
                await self.client.publish(self.t_reading, fr)
                self.sent += 1
                return
            except (MqttError, OSError):  # the link closed under it (e.g. the link task's own
                pass  # reconnect or shutdown): spool it, never lose the reading with this task
            except asyncio.CancelledError:  # shutdown before the PUBACK: keep it for next boot
                self.spool.push(fr)
                raise
        self.spool.push(fr)

    def status(self, state, now):
        # uptime from the wall clock: clamped, as a clock stepped back before the boot time (an RTC
        # ahead of NTP at boot) would make it negative, which the u32 field refuses
        if self.safe and state != messages.S_OFFLINE:
            state = messages.S_SAFE_MODE
        s = messages.Status(board=self.id, ts=now, state=state, uptime=max(now - self.started, 0),
                            heap_free=gc.mem_free(), queued=len(self.spool),
                            dropped=self.spool.dropped, rejected=self.orders.rejected,
                            reset=self.reset_cause, fw=FW_VERSION,
                            boots=self.boots.failed if self.boots else 0,
                            block=self.hw.largest_free(),
                            pending=self.switched or self.up.pending())
        return frame.seal(s, self.t_status, self.key)

    def set_clock(self, t):
        """Set the board's clock to ``t`` (NTP): the watchdog's deadlines and the boot time move
        with it (a first sync moves it by decades)."""
        d = t - self.clock.now()
        self.clock.set(t)
        self.due = [x + d for x in self.due]
        self.started += d

    def _on_message(self, topic, payload):
        if topic == self.t_update:
            self.manifest = payload  # the newest one counts
            return
        if topic.startswith(self.t_fw):
            self.chunk = (topic, payload)
            return
        if len(self.inbox) >= 4:  # bounded: a flood of orders cannot exhaust the heap. The
            self.inbox.pop(0)  # oldest goes: after an outage the broker delivers the queued
            self.orders.rejected += 1  # orders oldest first, and the newest is the one in force
        self.inbox.append((topic, payload))

    # -- tasks ------------------------------------------------------------------------------

    async def metering(self):
        poll = self.cfg.get("poll_s", 1)
        while not self.stop:
            now = self.clock.now()
            try:
                self.hw.physics(now)
                t = self.clock.now()
                if not 0 <= t - now <= 60:  # physics() set the clock (the simulator does):
                    self.due = [d + t - now for d in self.due]  # the deadlines move with it
                await self.meter.read(now)
                m = self.meter
                # a SunSpec output limit follows the house's load, from a grid power told import
                # from export and measured since the last step (never an old one with a new
                # inverter power)
                if self.act.pv_e is not None and m.two_way and m.fresh():
                    await self.act.follow(None if m.fault else m.p_w)
                self.regs.maybe_save(now)
                if not self.safe:
                    ack = await self.orders.tick(now)
                    if ack:
                        self.outbox.append(ack)
                if self.boots is not None and (self.sent or now - self.started >= 600):
                    self.boots.healthy()  # a reading acknowledged, or ten minutes up
                if self.trial and now - self.started >= 900:  # new code that never confirmed:
                    print("peergrid: update not confirmed in 15 min: restarting")
                    self.reboot = self.stop = True  # the next boot rolls it back (main.py)
            except Exception as e:  # a flash error or a bug: the metering goes on
                print("peergrid: metering error:", repr(e))
                self.errors += 1
            t = self.clock.now()
            if self.wdt is not None:
                # a stuck readings or link task (waiting for ever, not dead: the metering goes on)
                # stops the feeding, and the hardware resets the board
                if min(self.due) > t:
                    self.wdt.feed()
                else:
                    print("peergrid: a task is stuck, watchdog not fed:", self.due, t)
            await self.clock.sleep(poll)

    async def readings(self):
        every = self.cfg.get("reading_s", 10)
        while not self.stop:
            now = self.clock.now()
            try:
                self.bat = await self.hw.battery_state()
                await self._send_reading(self.reading(now))
            except Exception as e:  # a bug or a flash error must not end the readings for good
                print("peergrid: reading error:", repr(e))
                self.errors += 1
            gc.collect()
            # the next one at the slot after this one's, however long this one took: before, the
            # wait was reckoned from the start of this one, so a reading slow to send (a PUBACK
            # timeout) skipped a slot. A wake up to 2 s early (sleep rounding, the ticks against
            # the wall clock) is that slot's reading, not one more before it. Bounded: the clock
            # may have been set meanwhile.
            tol = min(2, every // 4)
            slot = now + tol
            slot += every - slot % every
            t = self.clock.now()
            self.due[0] = t + every + tol + _SLACK
            await self.clock.sleep(min(max(slot - t, 0), every + tol))

    async def ntp(self):
        """The clock from the NTP server (settings ``ntp``, default the broker's host): once a
        minute until it answers, then every 6 hours (the crystal drifts minutes a year). A clock
        already set at boot (the RTC kept it through a soft reset) waits the 6 hours first."""
        while not self.stop:
            if self.clock.synced:
                await self.clock.sleep(21_600)
            t = None
            if self.ntp_ip is not None:
                try:
                    t = await net.ntp_time(self.ntp_ip, self.ntp_port)
                except OSError as e:  # no route (Wi-Fi down): next time
                    print("peergrid: NTP:", repr(e))
            if t:
                self.set_clock(t)
            else:
                print("peergrid: no NTP time from", self.ntp_ip)
                await self.clock.sleep(60)

    async def wifi_task(self):
        """Rejoin the Wi-Fi when it drops, inside the running loop (``connect`` only starts the
        join; the wait is asyncio's). The link task meanwhile fails its sessions and spools."""
        sta = self.sta
        while not self.stop:
            if not sta.isconnected():
                self.rejoins += 1
                print("peergrid: Wi-Fi lost, rejoining", self.wifi["ssid"])
                try:
                    sta.disconnect()
                    sta.connect(self.wifi["ssid"], self.wifi.get("password", ""))
                except OSError as e:
                    print("peergrid: Wi-Fi:", repr(e))
                for _ in range(150):  # 30 s for the join, then start again
                    if sta.isconnected():
                        break
                    await asyncio.sleep_ms(200)
            await self.clock.sleep(5)

    async def link(self):
        backoff = 1
        while not self.stop:
            began = self.clock.now()
            self.due[1] = began + _SLACK
            try:
                await self._session()
            except (MqttError, OSError) as e:
                print("peergrid: link down:", e)
            except Exception as e:  # a bug must not end the link for good: log, reconnect
                print("peergrid: link error:", repr(e))
                self.errors += 1
            self.client.close()
            if self.stop:
                break
            if self.clock.now() - began >= 60:  # only a session that lasted resets the backoff:
                backoff = 1  # a broker that drops each one at once is not hammered every second
            self.due[1] = self.clock.now() + backoff + _SLACK  # a broker down for days is no stuck task
            await self.clock.sleep(backoff)
            backoff = min(backoff * 2, 60)

    async def _session(self):
        now = self.clock.now()
        self.client.set_will(self.t_status, self.status(messages.S_OFFLINE, now), retain=True)
        if self.client.host is None:
            raise MqttError("no address for broker %s: give a numeric address" % self.host)
        await self.client.connect(clean_session=False)
        reader = asyncio.create_task(self.client.run())
        try:
            try:
                if not self.safe:  # safe mode takes no orders
                    await self.client.subscribe(self.t_order)
                await self.client.subscribe(self.t_update)  # safe mode too: it waits for one
            except MqttError:  # refused or unanswered: a session without orders is a failed one
                self.errors += 1  # (counted; the link logs it and reconnects with backoff)
                raise
            enrol = messages.Enrol(board=self.id, pubkey=self.key.public,
                                   board_type=self.cfg.get("type", "esp32"), fw=FW_VERSION, ts=now)
            t_enrol = topics.board_topic(self.grid, self.id, "enrol")
            await self.client.publish(t_enrol, frame.seal(enrol, t_enrol, self.key))
            await self.client.publish(self.t_status, self.status(messages.S_ONLINE, now), retain=True)
            last_status = last_ping = now
            if self.rolled:
                v = self.rolled
                self.outbox.append(self._fwstate(messages.U_ROLLED_BACK, "%s never confirmed" % v, v))
                ota.rolled_back()
                self.rolled = None
            while not self.stop and self.client.connected:
                self.due[1] = self.clock.now() + _SLACK
                fr = None if self.safe else self.spool.peek()
                if fr is not None:  # replay in order, oldest first
                    await self.client.publish(self.t_reading, fr)
                    self.spool.pop()
                    self.sent += 1
                    continue
                if self.trial and self.sent:  # reconnected, a reading acknowledged: it stays
                    self.trial = False
                    self.outbox.append(self._fwstate(messages.U_CONFIRMED, "", ota.confirm()))
                while self.inbox:
                    topic, payload = self.inbox.pop(0)
                    ack = await self.orders.handle(topic, payload, self.clock.now())
                    if ack:
                        self.outbox.append(ack)
                while self.outbox:
                    await self.client.publish(*self.outbox.pop(0))
                now = self.clock.now()
                if now - last_status >= self.cfg.get("status_s", 300):
                    state = messages.S_FAILSAFE if self.orders.failsafe else messages.S_ONLINE
                    await self.client.publish(self.t_status, self.status(state, now), retain=True)
                    last_status = now
                if self.client.keepalive and now - last_ping >= self.client.keepalive:
                    # without pings the broker drops a board whose readings are further apart
                    # than 1.5 x keepalive; and one that no packet answers ends a dead session
                    # (a half-open TCP link takes writes without error for many minutes)
                    await self.client.ping()
                    last_ping = now
                if reader.done():
                    break
                await self.clock.sleep(0.2)
            if self.stop:
                await self.client.disconnect()
        finally:
            reader.cancel()

    # -- updates over the air (ota.py) -----------------------------------------------------

    def _fwstate(self, state, why, ver=None):
        t, msg = self.up.report(state, why, self.clock.now(), ver)
        return t, frame.seal(msg, t, self.key), True  # retained: the last state of each board

    async def _fetch(self, t):
        """Chunk ``t``: subscribe (the broker sends the retained chunk), wait for it up to 10 s,
        unsubscribe. None without it."""
        c = self.client
        self.chunk = None
        try:
            await c.subscribe(t)
            for _ in range(2000):
                if self.chunk is not None or not c.connected:
                    break
                await asyncio.sleep_ms(5)
            await c.unsubscribe(t)
        except (MqttError, OSError):
            pass
        got, self.chunk = self.chunk, None
        return got[1] if got is not None and got[0] == t else None

    async def updating(self):
        """Check each manifest received, fetch the image chunk by chunk while the link is up
        (a drop pauses it; a power cut resumes it at the block it was writing), check it whole,
        switch and restart into it. An error (a flash write, a bug) drops the download with its
        reason; the task goes on."""
        while not self.stop:
            try:
                if await self._update():
                    return
            except Exception as e:
                print("peergrid: update error:", repr(e))
                self.errors += 1
                why = self.up.drop("error: %r" % (e,))
                self.outbox.append(self._fwstate(messages.U_REFUSED, why))
                await asyncio.sleep_ms(1000)

    async def _update(self):
        up = self.up
        misses = 0
        buf = None
        while not self.stop:
            fr, self.manifest = self.manifest, None
            if fr is not None:
                why = up.offer(self.t_update, fr)
                if why is not None:
                    state = messages.U_REFUSED if why else messages.U_DOWNLOADING
                    print("peergrid: update:", why or "downloading %s" % up.pending())
                    self.outbox.append(self._fwstate(state, why))
                    misses = 0
            nxt = up.next_chunk() if self.client.connected else None
            if nxt is not None:
                data = await self._fetch(nxt[1])
                if data is not None:
                    why = up.write(nxt[0], data)
                    misses = 0
                elif self.client.connected:
                    misses += 1
                    why = "" if misses < 3 else up.drop("image truncated: no chunk %d" % nxt[0])
                else:
                    why = ""
                if why:
                    self.outbox.append(self._fwstate(messages.U_REFUSED, why))
                if up.man is None or up.pos < up.man.size:
                    continue
                if buf is None:
                    buf = bytearray(1024)
                up.off = 0
                why = None
                while why is None:  # the whole slot read back and hashed, a piece at a time
                    why = up.check_step(buf)
                    await asyncio.sleep_ms(0)
                if why:
                    self.outbox.append(self._fwstate(messages.U_REFUSED, why))
                    continue
                ver = up.man.version
                self.outbox.append(self._fwstate(messages.U_PENDING, "", ver))
                up.switch()
                self.switched = ver
                print("peergrid: update %s checked: restarting into it" % ver)
                for _ in range(100):  # the report out first (20 s at most)
                    if not self.outbox:
                        break
                    await asyncio.sleep_ms(200)
                self.reboot = self.stop = True
                return True
            await asyncio.sleep_ms(200)
        return False

    async def run(self, until=None):
        run = [self.metering(), self.link(), self.ntp(), self.updating()]
        if not self.safe:
            run.append(self.readings())
        else:  # only metering and status; the actuators to their safe defaults first (a task:
            lim = self.orders.limits  # their Modbus writes yield while an inverter answers)
            run.insert(0, self.act.apply(lim.safe_bat_w, lim.safe_ev_ma, lim.safe_pv_limit_w,
                                         lim.safe_relays))
            self.due[0] = self.started + 1_000_000_000  # no readings task to wait for
        if self.sta is not None:
            run.append(self.wifi_task())
        tasks = [asyncio.create_task(t) for t in run]
        try:
            while not self.stop and (until is None or self.clock.now() < until):
                await self.clock.sleep(1)
        finally:
            self.stop = True
            self.regs.maybe_save(self.clock.now(), force=True)  # clean shutdown: nothing lost
            await asyncio.sleep(0)
            for t in tasks:
                t.cancel()
            # MicroPython's loop stops with its main task: without this yield a cancelled task
            # never ran its handler, and a reading waiting for its PUBACK was lost, not spooled
            await asyncio.sleep(0)
            self.client.close()


def load_json(path):
    with open(path) as f:
        return json.load(f)
