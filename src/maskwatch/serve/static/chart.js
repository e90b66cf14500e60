// Compliance over time: one SVG line per camera of compliant / people seen per hour, drawn here (no library),
// from GET api/stats?since=&bucket=hour, with the same figures in a table for screen readers and copying.

import { api, el, query } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const REFRESH_MS = 60000;
const W = 600;
const H = 240;
const PAD = { left: 44, right: 16, top: 12, bottom: 34 };
// distinguishable for common colour-vision deficiencies (Okabe-Ito)
const COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000", "#f0e442"];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  node.append(...children.map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

function hourOf(row) {
  return Date.parse(row.hour ?? row.time ?? row.bucket);
}

function share(row) {
  const seen = Number(row.people_seen) || 0;
  return seen > 0 ? (Number(row.compliant) || 0) / seen : null;
}

function hourLabel(t, spanHours) {
  const d = new Date(t);
  return spanHours > 36
    ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + ` ${String(d.getHours()).padStart(2, "0")}h`
    : `${String(d.getHours()).padStart(2, "0")}:00`;
}

export function drawChart(box, rows, { since, until }) {
  const byCamera = new Map();
  for (const row of rows) {
    const t = hourOf(row);
    if (!Number.isFinite(t)) continue;
    if (!byCamera.has(row.camera)) byCamera.set(row.camera, []);
    byCamera.get(row.camera).push({ ...row, t });
  }
  const t0 = since;
  const t1 = Math.max(Math.ceil(until / 3600e3) * 3600e3, t0 + 3600e3); // to the end of the current hour
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - v) * (H - PAD.top - PAD.bottom);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title", class: "chart-svg" });
  root.append(svg("title", { id: "chart-title" }, "Compliance per camera and hour"));
  const axes = svg("g", { class: "axes" });
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    axes.append(
      svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: v === 0 ? "axis" : "grid" }),
      svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, `${v * 100}%`),
    );
  }
  const spanHours = (t1 - t0) / 3600e3;
  const step = Math.max(1, Math.ceil(spanHours / 8));
  const first = Math.ceil(t0 / 3600e3) * 3600e3;
  for (let t = first, i = 0; t <= t1; t += 3600e3, i++) {
    if (i % step) continue;
    axes.append(
      svg("line", { x1: x(t), x2: x(t), y1: y(0), y2: y(0) + 4, class: "axis" }),
      svg("text", { x: x(t), y: H - PAD.bottom + 18, "text-anchor": "middle" }, hourLabel(t, spanHours)),
    );
  }
  root.append(axes);
  const legend = el("ul", { class: "legend" });
  [...byCamera.keys()].sort().forEach((camera, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = byCamera
      .get(camera)
      .sort((a, b) => a.t - b.t)
      .filter((p) => share(p) !== null);
    const group = svg("g", { class: "series", "data-camera": camera, stroke: colour, fill: colour });
    if (points.length > 1) {
      group.append(svg("polyline", { fill: "none", "stroke-width": 2, points: points.map((p) => `${x(p.t + 1800e3)},${y(share(p))}`).join(" ") }));
    }
    for (const p of points) {
      const dot = svg("circle", { cx: x(p.t + 1800e3), cy: y(share(p)), r: 4 });
      dot.append(svg("title", {}, `${camera} ${new Date(p.t).toLocaleString()}: ${Math.round(share(p) * 100)}% of ${p.people_seen} compliant`));
      group.append(dot);
    }
    root.append(group);
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour; // CSSOM, not a style attribute: allowed under a strict CSP
    legend.append(el("li", {}, swatch, camera));
  });
  const nothing = byCamera.size === 0 ? el("p", { class: "empty" }, "No people counted in this range yet.") : null;
  box.replaceChildren(...[root, legend, nothing].filter(Boolean));
}

function fillTable(rows) {
  const body = document.querySelector("#chart-table tbody");
  body.replaceChildren(
    ...rows
      .slice()
      .sort((a, b) => String(a.camera).localeCompare(String(b.camera)) || hourOf(a) - hourOf(b))
      .map((row) => {
        const s = share(row);
        return el(
          "tr",
          {},
          el("td", {}, row.camera),
          el("td", {}, new Date(hourOf(row)).toLocaleString()),
          el("td", {}, String(row.people_seen)),
          el("td", {}, String(row.compliant)),
          el("td", {}, String(row.non_compliant)),
          el("td", {}, s === null ? "—" : `${Math.round(s * 100)}%`),
        );
      }),
  );
}

export function startChart() {
  const box = document.getElementById("chart-box");
  const range = document.getElementById("c-range");
  let timer = null;
  const refresh = async () => {
    clearTimeout(timer);
    const hours = Number(range.value) || 24;
    const until = Date.now();
    const since = Math.floor((until - hours * 3600e3) / 3600e3) * 3600e3;
    try {
      const rows = await api(`api/stats${query({ since: new Date(since).toISOString(), bucket: "hour" })}`);
      const list = Array.isArray(rows) ? rows : (rows?.buckets ?? []);
      drawChart(box, list, { since, until });
      fillTable(list);
    } catch (error) {
      box.replaceChildren(el("p", { class: "error", role: "alert" }, `Could not load the hourly counts: ${error.message}`));
    }
    timer = setTimeout(refresh, REFRESH_MS);
  };
  range.addEventListener("change", refresh);
  // people are counted as they are seen: redraw soon after live events, at most every few seconds
  let soon = null;
  document.addEventListener("maskwatch:event", () => {
    if (soon) return;
    soon = setTimeout(() => {
      soon = null;
      refresh();
    }, 3000);
  });
  refresh();
}
