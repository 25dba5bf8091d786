// The dashboard: reads the JSON API with the member's or operator's token and draws it.
"use strict";
(function () {
  var token = null, me = null, selected = null, timer = null;
  var $ = function (id) { return document.getElementById(id); };

  function takeToken() {
    var m = /[#&]token=([^&]+)/.exec(location.hash);
    if (m) {
      localStorage.setItem("peergrid-token", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname);
    }
    token = localStorage.getItem("peergrid-token");
  }

  function api(path, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ Authorization: "Bearer " + token }, opts.headers || {});
    return fetch(path, opts).then(function (r) {
      if (r.status === 401) { signOut("That token is not valid (any more)."); throw new Error("401"); }
      var ct = r.headers.get("Content-Type") || "";
      var body = ct.indexOf("json") >= 0 ? r.json() : r.text();
      return body.then(function (b) {
        if (!r.ok) throw new Error((b && b.error) || String(b));
        return b;
      });
    });
  }

  function kwh(mwh) { return (mwh / 1e6).toFixed(3); }
  function rp(mc) { return mc === null || mc === undefined ? "-" : (mc / 1000).toFixed(2); }
  function money(cents) { return (cents / 100).toFixed(2); }
  function pu(v, where) { return v === null ? "-" : v.toFixed(3) + " (" + where + ")"; }
  function pct(v, where) { return v === null ? "-" : v.toFixed(1) + " (" + where + ")"; }

  function table(id, head, rows, nums) {
    var t = $(id);
    t.innerHTML = "";
    var tr = t.insertRow();
    head.forEach(function (h, i) {
      var th = document.createElement("th");
      th.textContent = h;
      if (nums && nums[i]) th.className = "num";
      tr.appendChild(th);
    });
    rows.forEach(function (r) {
      var row = t.insertRow();
      r.forEach(function (v, i) {
        var td = row.insertCell();
        if (v instanceof Node) td.appendChild(v); else td.textContent = v === null || v === undefined ? "-" : v;
        if (nums && nums[i]) td.className = "num";
      });
    });
  }

  function q(params) {
    var s = Object.keys(params).filter(function (k) { return params[k] !== null && params[k] !== undefined; })
      .map(function (k) { return k + "=" + encodeURIComponent(params[k]); }).join("&");
    return s ? "?" + s : "";
  }

  function scope() { return me.role === "operator" && selected ? selected : null; }
  function billMember() { return me.member || selected || (me.members[0] && me.members[0].id); }

  function drawPower() {
    return api("/api/power" + q({ hours: 6, member: scope() })).then(function (p) {
      var series = Object.keys(p.members).map(function (m) { return { name: m, values: p.members[m] }; });
      Charts.line($("chart-power"), p.t, series, $("legend-power"));
    });
  }

  function drawMicrogrid() {
    return api("/api/microgrid?hours=6").then(function (g) {
      Charts.line($("chart-microgrid"), g.t, [
        { name: "import", values: g["import"], color: "#d62728" },
        { name: "export", values: g["export"].map(function (v) { return -v; }), color: "#2ca02c" },
        { name: "net", values: g.net, color: "#555" }
      ], $("legend-microgrid"));
    });
  }

  function drawMarket() {
    return api("/api/market" + q({ limit: 48, member: scope() })).then(function (mk) {
      Charts.bars($("chart-price"), mk.intervals.filter(function (i) { return i.price !== null; })
        .map(function (i) { return { label: Charts.hhmm(i.start), value: i.price / 1000 }; }), "#1f77b4");
      Charts.bars($("chart-traded"), mk.intervals.map(function (i) {
        return { label: Charts.hhmm(i.start), value: i.traded / 1e6 };
      }), "#2ca02c");
      $("current-interval").textContent = mk.current ? Charts.hhmm(mk.current.start) + " (price " + rp(mk.current.price) + " Rp/kWh)" : "-";
      table("bids", ["party", "side", "kWh", "limit Rp/kWh"], mk.bids.map(function (b) {
        return [b.party, b.side, kwh(b.energy), rp(b.limit)];
      }), [0, 0, 1, 1]);
      var sel = $("dispute-interval"), keep = sel.value;
      sel.innerHTML = "";
      mk.intervals.slice().reverse().forEach(function (i) {
        var o = document.createElement("option");
        o.value = i.start;
        o.textContent = new Date(i.start * 1000).toISOString().slice(0, 16).replace("T", " ");
        sel.appendChild(o);
      });
      if (keep) sel.value = keep;
    });
  }

  function drawTrades() {
    return api("/api/trades" + q({ limit: 20, member: scope() })).then(function (ts) {
      table("trades", ["interval", "buyer", "seller", "kWh", "Rp/kWh", "fee"], ts.map(function (t) {
        return [Charts.hhmm(t.interval), t.buyer, t.seller, kwh(t.energy), rp(t.price), rp(t.fee)];
      }), [0, 0, 0, 1, 1, 1]);
    });
  }

  function drawGrid() {
    return api("/api/grid" + q({ member: scope() })).then(function (g) {
      Charts.bars($("chart-voltage"), g.boards.filter(function (b) { return b.u !== null; })
        .map(function (b) { return { label: b.board, value: b.u / 1000 }; }), "#9467bd");
      table("curtailments", ["interval", "board", "limit W", "reason"], g.curtailments.map(function (c) {
        return [Charts.hhmm(c.interval), c.board, c.pv_limit_w, c.reason];
      }), [0, 0, 1, 0]);
      table("redispatches", ["interval", "board", "device", "change W", "setpoint", "reason", "paid"],
        g.redispatches.map(function (r) {
          return [Charts.hhmm(r.interval), r.board, r.kind, r.delta_w, r.setpoint, r.reason, money(r.compensation / 1e9)];
        }), [0, 0, 0, 1, 1, 0, 1]);
      var checks = g.checks.slice().reverse();
      Charts.line($("chart-limits"), checks.map(function (c) { return c.interval; }), [
        { name: "most loaded transformer %", values: checks.map(function (c) { return c.trafo_max_pct; }), color: "#d62728" },
        { name: "most loaded line %", values: checks.map(function (c) { return c.line_max_pct; }), color: "#ff7f0e" }
      ], $("legend-limits"));
      table("checks", ["interval", "V min pu", "V max pu", "line %", "transformer %", "broken", "from"],
        g.checks.map(function (c) {
          return [Charts.hhmm(c.interval), pu(c.v_min_pu, c.v_min_bus), pu(c.v_max_pu, c.v_max_bus),
            pct(c.line_max_pct, c.line_max), pct(c.trafo_max_pct, c.trafo_max), c.violations, c.source];
        }), [0, 1, 1, 1, 1, 1, 0]);
    });
  }

  function drawBoards() {
    return api("/api/boards" + q({ member: scope() })).then(function (h) {
      $("asof").textContent = "as of " + new Date(h.as_of * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
      table("boards", ["board", "member", "state", "last reading"], h.boards.map(function (b) {
        var s = document.createElement("span");
        s.className = b.online ? "online" : "offline";
        s.textContent = b.online ? "online" : "offline";
        return [b.board, b.member, s, b.last_ts ? Charts.hhmm(b.last_ts) + " (seq " + b.last_seq + ")" : "never"];
      }));
      var rj = $("rejections");
      rj.textContent = "";
      if (h.rejections) {
        var parts = Object.keys(h.rejections).map(function (k) { return k + " " + h.rejections[k]; });
        rj.textContent = "Rejected messages: " + (parts.length ? parts.join(", ") : "none");
      }
      if (h.quarantine) {
        var held = Object.keys(h.quarantine).map(function (k) { return k + " " + h.quarantine[k]; });
        rj.textContent += ". Held in quarantine (peergrid quarantine list): " +
          (held.length ? held.join(", ") : "none");
      }
    });
  }

  function drawBill() {
    var m = billMember();
    if (!m) return Promise.resolve();
    return api("/api/members/" + encodeURIComponent(m) + "/bill").then(function (b) {
      $("bill-period").textContent = m + ", " + b.from + " to " + b.to + " (" + b.timezone + ")" +
        ", + credit / - to pay";
      Charts.line($("chart-bill"), b.running.map(function (r) { return r[0]; }),
        [{ name: "running total", values: b.running.map(function (r) { return r[2] / 100; }) }]);
      var rows = b.lines.map(function (l) { return [l.label, l.energy ? kwh(Math.abs(l.energy)) : "", money(l.cents)]; });
      rows.push(["Total", "", money(b.total_cents)]);
      table("bill", ["", "kWh", "amount"], rows, [0, 1, 1]);
    });
  }

  function drawDisputes() {
    var m = billMember();
    var path = me.role === "operator" && !selected ? "/api/disputes" : "/api/members/" + encodeURIComponent(m) + "/disputes";
    return api(path).then(function (ds) {
      table("disputes", ["#", "member", "interval", "reason", "status"], ds.map(function (d) {
        return [d.id, d.member, Charts.hhmm(d.interval), d.reason, d.status];
      }));
    });
  }

  function describe(prefs) {
    var out = [];
    var st = prefs.storage;
    if (st && st.kind === "ev") out.push("EV " + kwh(st.capacity_mwh) + " kWh, " + st.max_charge_w + " W, to " +
      ((st.target_soc || 1000) / 10) + " % by " + (st.departure || "-"));
    else if (st) out.push("battery " + kwh(st.capacity_mwh) + " kWh, " + st.max_charge_w + "/" +
      (st.max_discharge_w || 0) + " W");
    if (prefs.ev) out.push("EV " + prefs.ev.max_charge_w + " W, " + kwh(prefs.ev.need_mwh || 0) + " kWh by " +
      (prefs.ev.departure || "07:00"));
    if (prefs.deferrable) out.push("deferrable " + prefs.deferrable.w + " W on relay " + (prefs.deferrable.relay || 0));
    if (prefs.pv) out.push("PV " + prefs.pv.kwp + " kWp");
    if (prefs.integrator) out.push("integrator plan");
    if (prefs.flex) out.push("flexibility asks " + JSON.stringify(prefs.flex));
    return out.join("; ") || "-";
  }

  function drawDevices() {
    return Promise.all([api("/api/devices"), api("/api/flex/requests")]).then(function (r) {
      table("devices", ["member", "feeder", "devices", "from next interval"], r[0].map(function (d) {
        return [d.id, d.feeder || "-", describe(d.prefs), d.pending ? describe(d.pending.prefs) : ""];
      }));
      table("flex-requests", ["request", "state", "point", "W", "start", "delivered kWh", "paid"],
        r[1].slice(0, 10).map(function (x) {
          return [x.request_id, x.state, x.congestion_point, x.direction + " " + x.power_w,
            Charts.hhmm(x.start), x.delivered_mwh === null ? "-" : kwh(x.delivered_mwh),
            x.paid === null ? "-" : money(x.paid / 1e9)];
        }), [false, false, false, true, false, true, true]);
    });
  }

  function when(t) { return t ? new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ") : "never"; }

  function drawChargers() {
    if (me.role !== "operator") return Promise.resolve();  // operators only, as the API
    return api("/api/chargers" + q({ member: scope() })).then(function (cs) {
      table("chargers", ["charger", "member", "state", "last seen", "password set", "session kWh",
        "newest limit A", "disagreements"], cs.map(function (c) {
        var s = document.createElement("span");
        s.className = c.state === "online" ? "online" : "offline";
        s.textContent = c.state + (c.reason ? " (" + c.reason + ")" : "");
        return [c.id, c.member, s, when(c.last_seen), c.has_password ? when(c.password_set) : "no (refused)",
          c.session ? (c.session.energy_wh / 1000).toFixed(3) : "-",
          c.profile ? (c.profile.limit_ma / 1000).toFixed(1) + " " + c.profile.status : "-",
          c.disagreements + " of " + c.checks.length];
      }), [0, 0, 0, 0, 0, 1, 1, 1]);
    });
  }

  function refresh() {
    return Promise.all([drawPower(), drawMicrogrid(), drawMarket(), drawTrades(), drawGrid(), drawBoards(),
      drawBill(), drawDisputes(), drawDevices(), drawChargers()]).then(function () {
      document.body.setAttribute("data-loaded", String(Date.now()));
    }).catch(function (e) { console.error(e); });
  }

  function signOut(msg) {
    localStorage.removeItem("peergrid-token");
    token = null;
    if (timer) clearInterval(timer);
    $("main").hidden = true;
    $("logout").hidden = true;
    $("chargers-card").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = msg || "";
  }

  function start() {
    api("/api/me").then(function (who) {
      me = who;
      return api("/api/members");
    }).then(function (ms) {
      me.members = ms;
      $("who").textContent = me.role === "operator" ? "operator, grid " + me.grid : "member " + me.member;
      if (me.role === "operator") {
        var sel = $("member");
        sel.innerHTML = '<option value="">all members</option>';
        ms.forEach(function (m) {
          var o = document.createElement("option");
          o.value = m.id; o.textContent = m.name + " (" + m.id + ")";
          sel.appendChild(o);
        });
        $("pick").hidden = false;
        $("chargers-card").hidden = false;
      }
      $("login").hidden = true;
      $("main").hidden = false;
      $("logout").hidden = false;
      refresh();
      timer = setInterval(refresh, 10000);
    }).catch(function () {});
  }

  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    localStorage.setItem("peergrid-token", $("token").value.trim());
    token = $("token").value.trim();
    start();
  });
  $("logout").addEventListener("click", function () { signOut(""); });
  $("member").addEventListener("change", function () { selected = $("member").value || null; refresh(); });
  $("dispute-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var m = billMember();
    api("/api/members/" + encodeURIComponent(m) + "/disputes", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ interval: parseInt($("dispute-interval").value, 10), reason: $("dispute-reason").value })
    }).then(function (d) {
      $("dispute-msg").textContent = "Dispute #" + d.id + " recorded with its evidence.";
      $("dispute-reason").value = "";
      return drawDisputes();
    }).catch(function (err) { $("dispute-msg").textContent = err.message; });
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-export]"), function (b) {
    b.addEventListener("click", function () {
      var kind = b.getAttribute("data-export");
      api("/api/export/" + kind + ".csv" + q({ member: me.member || scope() })).then(function (text) {
        var a = document.createElement("a");
        a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
        a.download = "peergrid-" + kind + ".csv";
        a.click();
      });
    });
  });

  takeToken();
  if (token) start(); else signOut("");
})();
