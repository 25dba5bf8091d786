// Small SVG charts for the dashboard: a line chart of time series and a bar chart.
// Each chart sets data-points on its <svg> to the number of values it drew.
"use strict";
var Charts = (function () {
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function size(svg) {
    var vb = svg.viewBox.baseVal;
    return { w: vb.width || 400, h: vb.height || 150 };
  }

  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

  function niceRange(lo, hi) {
    if (lo === hi) { lo -= 1; hi += 1; }
    var pad = (hi - lo) * 0.05;
    return [lo - pad, hi + pad];
  }

  function fmt(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    return a >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(2);
  }

  function hhmm(t) {
    var d = new Date(t * 1000);
    return ("0" + d.getUTCHours()).slice(-2) + ":" + ("0" + d.getUTCMinutes()).slice(-2);
  }

  function axes(svg, m, w, h, ylo, yhi, y) {
    el("line", { x1: m.l, y1: m.t, x2: m.l, y2: h - m.b, "class": "axis" }, svg);
    el("line", { x1: m.l, y1: h - m.b, x2: w - m.r, y2: h - m.b, "class": "axis" }, svg);
    for (var i = 0; i <= 4; i++) {
      var v = ylo + (yhi - ylo) * i / 4;
      el("text", { x: m.l - 4, y: y(v) + 3, "text-anchor": "end" }, svg).textContent = fmt(v);
    }
    if (ylo < 0 && yhi > 0) el("line", { x1: m.l, y1: y(0), x2: w - m.r, y2: y(0), "class": "zero" }, svg);
  }

  function empty(svg, text) {
    var s = size(svg);
    el("text", { x: s.w / 2, y: s.h / 2, "text-anchor": "middle" }, svg).textContent = text || "no data yet";
  }

  // series: [{name, values: [number|null]}], t: [unix seconds]
  function line(svg, t, series, legend) {
    clear(svg);
    var s = size(svg), m = { l: 44, r: 18, t: 8, b: 18 }, n = 0;
    var all = [];
    series.forEach(function (x) { x.values.forEach(function (v) { if (v !== null) all.push(v); }); });
    if (!t.length || !all.length) { empty(svg); svg.setAttribute("data-points", "0"); return; }
    var r = niceRange(Math.min.apply(null, all.concat([0])), Math.max.apply(null, all.concat([0])));
    var t0 = t[0], t1 = t[t.length - 1] === t0 ? t0 + 1 : t[t.length - 1];
    var x = function (v) { return m.l + (v - t0) / (t1 - t0) * (s.w - m.l - m.r); };
    var y = function (v) { return s.h - m.b - (v - r[0]) / (r[1] - r[0]) * (s.h - m.t - m.b); };
    axes(svg, m, s.w, s.h, r[0], r[1], y);
    for (var i = 0; i < 5; i++) {
      var tt = t0 + (t1 - t0) * i / 4;
      el("text", { x: x(tt), y: s.h - 4, "text-anchor": "middle" }, svg).textContent = hhmm(tt);
    }
    if (legend) legend.innerHTML = "";
    series.forEach(function (ser, k) {
      var d = "", pen = "M";
      ser.values.forEach(function (v, j) {
        if (v === null) { pen = "M"; return; }
        d += pen + x(t[j]).toFixed(1) + "," + y(v).toFixed(1) + " ";
        pen = "L"; n++;
      });
      var color = ser.color || COLORS[k % COLORS.length];
      var p = el("path", { d: d, stroke: color, "class": "series", "data-name": ser.name }, svg);
      el("title", {}, p).textContent = ser.name;
      if (legend) {
        var span = document.createElement("span"), swatch = document.createElement("i");
        swatch.style.background = color;  // not a style attribute: the page's CSP allows no inline style
        span.appendChild(swatch);
        span.appendChild(document.createTextNode(ser.name));
        legend.appendChild(span);
      }
    });
    svg.setAttribute("data-points", String(n));
  }

  // bars: [{label, value}]
  function bars(svg, items, color) {
    clear(svg);
    var s = size(svg), m = { l: 44, r: 8, t: 8, b: 18 };
    if (!items.length) { empty(svg); svg.setAttribute("data-points", "0"); return; }
    var vals = items.map(function (b) { return b.value; });
    var r = niceRange(Math.min.apply(null, vals.concat([0])), Math.max.apply(null, vals.concat([0])));
    var y = function (v) { return s.h - m.b - (v - r[0]) / (r[1] - r[0]) * (s.h - m.t - m.b); };
    axes(svg, m, s.w, s.h, r[0], r[1], y);
    var bw = (s.w - m.l - m.r) / items.length;
    var every = Math.max(1, Math.ceil(items.length / 8));
    items.forEach(function (b, i) {
      var x0 = m.l + i * bw + bw * 0.1, top = Math.min(y(b.value), y(0));
      var rect = el("rect", {
        x: x0.toFixed(1), y: top.toFixed(1), width: (bw * 0.8).toFixed(1),
        height: Math.max(1, Math.abs(y(b.value) - y(0))).toFixed(1),
        fill: b.color || color || COLORS[0], "class": "bar"
      }, svg);
      el("title", {}, rect).textContent = b.label + ": " + fmt(b.value);
      if (i % every === 0) {
        el("text", { x: x0 + bw * 0.4, y: s.h - 4, "text-anchor": "middle" }, svg).textContent = b.label;
      }
    });
    svg.setAttribute("data-points", String(items.length));
  }

  return { line: line, bars: bars, hhmm: hhmm, colors: COLORS };
})();
