"""The score histogram with a threshold line the user drags with the mouse.

A custom component built with ``st.components.v2``: inline HTML/CSS/JS, an SVG drawn in the
browser, no CDN. Python sends the histogram bins, a table of flagged counts (at most
``ad_core.plots.MAX_COUNT_POINTS`` score values, never all the scores), the current threshold
and the page's flagged count at it; the component sends a new threshold back as a trigger
value when the user releases the line (or after arrow keys on the focused line).

The histogram is drawn by the component itself so the line sits on the same axis; a slider
and a number box on the page stay in sync with it for keyboard use. Scores above the bins
(``hist["overflow_from"]``) share one overflow bar to the right, labelled "> value"; the line
can be dragged into it. The readout's count is the page's "Flagged rows" at rest, and the
count table's (exact unless the data has more distinct scores than the table holds, then
marked "≈") while the line moves. ``flaggedCount``, ``readoutText``, ``chartLayout`` and
``xScale`` are named exports of the module, so tests can run them outside a browser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

_HTML = '<div class="thr-root" data-testid="threshold-histogram"></div>'

_CSS = """
.thr-root { width: 100%; font-family: var(--st-font, sans-serif); color: var(--st-text-color, #31333f); }
.thr-root svg { display: block; touch-action: none; user-select: none; }
.thr-root .axis text { font-size: 11px; fill: currentColor; opacity: 0.75; }
.thr-root .axis line, .thr-root .axis path { stroke: currentColor; opacity: 0.25; }
.thr-root .hit { cursor: ew-resize; fill: transparent; }
.thr-root .line { stroke: #c2410c; stroke-width: 2.5; pointer-events: none; }
.thr-root .handle { fill: #c2410c; cursor: ew-resize; outline: none; }
.thr-root .handle:focus { stroke: var(--st-text-color, #31333f); stroke-width: 2; }
.thr-root .flagged { fill: rgba(194, 65, 12, 0.08); pointer-events: none; }
.thr-root .readout { font-size: 12px; font-weight: 600; fill: #c2410c; paint-order: stroke;
  stroke: var(--st-background-color, #ffffff); stroke-width: 4px; stroke-linejoin: round; }
.thr-root .legend text { font-size: 11px; fill: currentColor; }
.thr-root .slot { fill: currentColor; opacity: 0.04; }
"""

_JS = r"""
const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs, parent) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function niceTicks(lo, hi, n) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12 * span; v += step) out.push(v);
  return out;
}

export function fmt(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

// Rows flagged (score > t) from the table of ad_core.plots.flagged_counts: exact when the
// table holds every distinct score, else exact at its points and interpolated between.
export function flaggedCount(counts, nRows, t) {
  const v = counts.values;
  const a = counts.above;
  const n = v.length;
  if (!n) return { n: 0, exact: true };
  if (!(t >= v[0])) return { n: nRows, exact: true };
  let lo = 0;
  let hi = n - 1;
  if (t >= v[hi]) return { n: a[hi], exact: true };
  while (hi - lo > 1) {  // invariant: v[lo] <= t < v[hi]
    const mid = (lo + hi) >> 1;
    if (v[mid] <= t) lo = mid; else hi = mid;
  }
  if (counts.exact || t === v[lo]) return { n: a[lo], exact: true };
  const frac = (t - v[lo]) / (v[hi] - v[lo]);
  return { n: Math.round(a[lo] - frac * (a[lo] - a[hi])), exact: false };
}

// What the readout says at threshold t: the page's own count at the threshold it holds
// (the "Flagged rows" figure), the table's count while the line moves.
export function readoutText(data, t) {
  const c = t === data.threshold && Number.isInteger(data.n_flagged)
    ? { n: data.n_flagged, exact: true }
    : flaggedCount(data.counts, data.n_rows, t);
  const share = data.n_rows ? (100 * c.n) / data.n_rows : 0;
  let where = "";
  if (t >= data.max) where = " · above every score";
  else if (t < data.min) where = " · below every score";
  else if (data.overflow_from != null && t > data.overflow_from) {
    where = ` · beyond the chart, in the > ${fmt(data.overflow_from)} bar`;
  }
  const count = `${c.exact ? "" : "≈"}${c.n.toLocaleString("en-US")}`;
  return `threshold ${fmt(t)} · ${count} flagged (${share.toFixed(1)} %)${where}`;
}

// Score <-> pixel. Every bin is equally wide on screen (the bins are evenly spaced on the
// linear or log axis), so positions interpolate within a bin; the overflow slot right of
// the bins maps the scores above the last edge linearly up to the highest score.
export function xScale(data, left, width, slotX, slotW) {
  const edges = data.edges;
  const nb = edges.length - 1;
  const x0 = edges[0];
  const x1 = edges[nb];
  const xTop = Math.max(x1, data.max);
  const hasOverflow = data.overflow_from != null && slotW > 0 && xTop > x1;
  const bw = width / nb;
  const binOf = (v) => {
    let lo = 0;
    let hi = nb;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (edges[mid] <= v) lo = mid; else hi = mid;
    }
    return lo;
  };
  const sx = (v) => {
    if (!(v > x0)) return left;
    if (v <= x1 || !hasOverflow) {
      const u = Math.min(v, x1);
      const i = binOf(u);
      const span = edges[i + 1] - edges[i];
      return left + (i + (span > 0 ? (u - edges[i]) / span : 0)) * bw;
    }
    return slotX + ((Math.min(v, xTop) - x1) / (xTop - x1)) * slotW;
  };
  const valueAt = (px) => {
    if (px <= left) return x0;
    if (px <= left + width || !hasOverflow) {
      const f = Math.min(px - left, width) / bw;
      const i = Math.min(nb - 1, Math.floor(f));
      return edges[i] + (f - i) * (edges[i + 1] - edges[i]);
    }
    if (px <= slotX) return x1;
    return x1 + Math.min((px - slotX) / slotW, 1) * (xTop - x1);
  };
  return { sx, valueAt, x0, x1, xTop, hasOverflow };
}

// Where things sit in a chart W x H pixels wide: margins, the bins' width, the overflow slot.
export function chartLayout(data, W, H) {
  const m = { l: 52, r: 14, t: 34, b: 34 };
  const slot = data.overflow_from != null ? 64 : 0; // the overflow bar: scores above the bins
  const pw = W - m.l - m.r - slot;
  const ph = H - m.t - m.b;
  return { m, slot, pw, ph, slotX: m.l + pw + 8, slotW: Math.max(0, slot - 8) };
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const root = parentElement.querySelector(".thr-root");
  if (!root || !data) return;
  const state = root.__thr || (root.__thr = { dragging: false });
  if (!state.dragging) state.value = data.threshold;

  const edges = data.edges;
  const series = data.series;
  const nBins = edges.length - 1;
  const totals = new Array(nBins).fill(0);
  let overflow = 0;
  series.forEach((s) => {
    s.counts.forEach((c, i) => (totals[i] += c));
    overflow += s.overflow || 0;
  });
  const yOf = (c) => (data.log ? Math.log10(1 + c) : c);
  const yMaxCount = Math.max(1, ...totals, overflow);
  const yMax = yOf(yMaxCount);

  const W = Math.max(320, root.clientWidth || 700);
  const H = data.height || 260;
  const { m, slot, pw, ph, slotX, slotW } = chartLayout(data, W, H);
  const { sx, valueAt, x0, x1, xTop, hasOverflow } = xScale(data, m.l, pw, slotX, slotW);
  const sy = (c) => m.t + ph - (yOf(c) / yMax) * ph;

  root.innerHTML = "";
  const svg = el("svg", { width: W, height: H, role: "img",
    "aria-label": "Histogram of anomaly scores with a draggable threshold line" }, root);

  // flagged side
  const shade = el("rect", { class: "flagged", y: m.t, height: ph }, svg);

  // bars, stacked in series order; then the overflow bar
  const bars = el("g", {}, svg);
  const base = new Array(nBins).fill(0);
  series.forEach((s) => {
    s.counts.forEach((c, i) => {
      if (c <= 0) return;
      const yTop = sy(base[i] + c);
      const yBot = sy(base[i]);
      base[i] += c;
      const xa = sx(edges[i]);
      const xb = sx(edges[i + 1]);
      const r = el("rect", { x: xa + 0.5, y: yTop, width: Math.max(0.5, xb - xa - 1),
        height: Math.max(0.5, yBot - yTop), fill: s.color }, bars);
      const t = el("title", {}, r);
      t.textContent = `${s.name}: ${c} rows, score ${fmt(edges[i])} .. ${fmt(edges[i + 1])}`;
    });
  });
  const ax = el("g", { class: "axis" }, svg);
  if (hasOverflow) {
    el("rect", { class: "slot", x: slotX, y: m.t, width: slotW, height: ph }, bars);
    let acc = 0;
    series.forEach((s) => {
      const c = s.overflow || 0;
      if (c <= 0) return;
      const yTop = sy(acc + c);
      const yBot = sy(acc);
      acc += c;
      const r = el("rect", { x: slotX, y: yTop, width: slotW, height: Math.max(0.5, yBot - yTop),
        fill: s.color, opacity: 0.75, "data-testid": "threshold-overflow-bar" }, bars);
      const t = el("title", {}, r);
      t.textContent = `${s.name}: ${c} rows with a score above ${fmt(x1)} (up to ${fmt(xTop)})`;
    });
    const lab = el("text", { x: slotX + slotW / 2, y: m.t + ph + 16, "text-anchor": "middle",
      "data-testid": "threshold-overflow-label" }, ax);
    lab.textContent = `> ${fmt(x1)}`;
    const tip = el("title", {}, lab);
    tip.textContent = `${overflow.toLocaleString("en-US")} rows score above the chart's range, ` +
      `from ${fmt(x1)} to ${fmt(xTop)}; drag the line into this bar for a threshold there`;
    el("line", { x1: slotX - 4, x2: slotX - 4, y1: m.t, y2: m.t + ph, "stroke-dasharray": "3 3" }, ax);
  }

  // axes
  el("line", { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph }, ax);
  const ticks = data.ticks || niceTicks(x0, x1, Math.max(3, Math.floor(pw / 90)));
  let lastTick = -Infinity;
  ticks.forEach((v) => {
    const px = sx(v);
    if (px - lastTick < 36) return; // labels would overlap
    lastTick = px;
    el("line", { x1: px, x2: px, y1: m.t + ph, y2: m.t + ph + 4 }, ax);
    const t = el("text", { x: px, y: m.t + ph + 16, "text-anchor": "middle" }, ax);
    t.textContent = fmt(v);
  });
  const xl = el("text", { x: m.l + pw, y: H - 2, "text-anchor": "end" }, ax);
  xl.textContent = data.x_scale === "log" ? "anomaly score (log scale) →" : "anomaly score →";
  const yTicks = data.log
    ? [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000].filter((v) => v <= yMaxCount)
    : niceTicks(0, yMaxCount, 4);
  yTicks.forEach((v) => {
    const y = sy(v);
    el("line", { x1: m.l - 4, x2: m.l + pw, y1: y, y2: y, opacity: 0.08 }, ax);
    const t = el("text", { x: m.l - 6, y: y + 4, "text-anchor": "end" }, ax);
    t.textContent = v >= 1000 ? `${v / 1000}k` : String(v);
  });
  const yl = el("text", { x: 4, y: 14 }, ax);
  yl.textContent = data.log ? "rows (log)" : "rows";

  // legend, top right
  const lg = el("g", { class: "legend" }, svg);
  if (series.length > 1) {
    let lx = W - m.r;
    [...series].reverse().forEach((s) => {
      const t = el("text", { x: lx, y: 15, "text-anchor": "end" }, lg);
      t.textContent = s.name;
      lx -= 7 * s.name.length + 4;
      el("rect", { x: lx - 10, y: 6, width: 10, height: 10, fill: s.color }, lg);
      lx -= 22;
    });
  }

  // the threshold line: a wide invisible hit area for the mouse, the line, a handle
  const hit = el("rect", { class: "hit", x: m.l, y: m.t, width: pw + slot, height: ph,
    "data-testid": "threshold-drag-area" }, svg);
  const line = el("line", { class: "line", y1: m.t - 6, y2: m.t + ph,
    "data-testid": "threshold-line" }, svg);
  const handle = el("rect", { class: "handle", y: m.t - 16, width: 12, height: 12, rx: 3,
    tabindex: 0, role: "slider", "aria-label": "Threshold (arrow keys move it)",
    "data-testid": "threshold-handle" }, svg);
  const readout = el("text", { class: "readout", y: m.t + 14, "data-testid": "threshold-readout" }, svg);

  const place = (v) => {
    const x = sx(v);
    line.setAttribute("x1", x);
    line.setAttribute("x2", x);
    // dashed where no score lies beyond the line (below the lowest, above the highest)
    line.setAttribute("stroke-dasharray", v < data.min || v >= data.max ? "4 3" : "none");
    handle.setAttribute("x", x - 6);
    shade.setAttribute("x", x);
    shade.setAttribute("width", Math.max(0, m.l + pw + slot - x));
    handle.setAttribute("aria-valuenow", v);
    readout.textContent = readoutText(data, v);
    const right = x > m.l + (pw + slot) * 0.6;
    readout.setAttribute("x", right ? x - 8 : x + 8);
    readout.setAttribute("text-anchor", right ? "end" : "start");
  };
  place(state.value);

  const send = (v) => {
    if (v !== data.threshold) setTriggerValue("threshold", v);
  };
  const localX = (ev) => ev.clientX - svg.getBoundingClientRect().left;
  const down = (ev) => {
    state.dragging = true;
    if (svg.setPointerCapture && ev.pointerId !== undefined) svg.setPointerCapture(ev.pointerId);
    state.value = valueAt(localX(ev));
    place(state.value);
    ev.preventDefault();
  };
  const move = (ev) => {
    if (!state.dragging) return;
    state.value = valueAt(localX(ev));
    place(state.value);
  };
  const up = () => {
    if (!state.dragging) return;
    state.dragging = false;
    send(state.value);
  };
  hit.addEventListener("pointerdown", down);
  handle.addEventListener("pointerdown", down);
  svg.addEventListener("pointermove", move);
  svg.addEventListener("pointerup", up);
  svg.addEventListener("pointercancel", up);

  let timer = null;
  handle.addEventListener("keydown", (ev) => {
    // one pixel per key press (ten with Shift), so steps follow the axis, log and overflow too
    const px = ev.shiftKey ? 10 : 1;
    let dir = 0;
    if (ev.key === "ArrowLeft" || ev.key === "ArrowDown") dir = -1;
    else if (ev.key === "ArrowRight" || ev.key === "ArrowUp") dir = 1;
    else return;
    ev.preventDefault();
    state.value = valueAt(sx(state.value) + dir * px);
    place(state.value);
    clearTimeout(timer);
    timer = setTimeout(() => send(state.value), 400);
  });

  return () => clearTimeout(timer);
}
"""

_threshold_histogram = st.components.v2.component(
    "ad_studio.threshold_histogram", html=_HTML, css=_CSS, js=_JS
)


def threshold_histogram(
    hist: dict[str, Any],
    threshold: float,
    *,
    n_flagged: int,
    key: str,
    on_change: Callable[[float], None],
    height: int = 260,
) -> None:
    """Draw the histogram ``hist`` (from ``ad_core.plots.histogram_data``) with a draggable line.

    ``n_flagged`` is the page's count of rows above ``threshold``; the readout shows it at
    the line's resting place, and counts from ``hist["counts"]`` while the line moves.
    When the user moves the line, ``on_change(new_threshold)`` runs as a widget callback,
    i.e. before the next script run, so everything on the page sees the new value at once.
    """

    def _changed() -> None:
        value = (st.session_state.get(key) or {}).get("threshold")
        if value is not None:
            on_change(float(value))

    _threshold_histogram(
        key=key,
        data={
            **hist,
            "threshold": float(threshold),
            "n_flagged": int(n_flagged),
            "height": int(height),
        },
        on_threshold_change=_changed,
        height=int(height) + 4,
    )
