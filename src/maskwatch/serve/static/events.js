// The event list: filled from GET api/events, kept live by server-sent events (api/events/stream), with
// filters, snapshot thumbnails and a detail dialog. Live events are filtered here with the same rules the
// server applies to the list, so a filtered view stays filtered.

import { api, ApiError, el, formatDuration, formatTime, labelText, localToIso, query } from "./api.js";

const LIMIT = 100;
const RETRY_MS = 3000;

const rows = new Map(); // event id -> {event, row}
let filters = { camera: "", label: "", since: "", until: "" };
let list, summary, errorBox, conn;
let source = null;
let loading = null;

function snapshotUrl(event) {
  // the score changes when a better snapshot replaces the old one (an update): a new URL skips the cache
  return `api/events/${encodeURIComponent(event.id)}/snapshot.jpg?v=${encodeURIComponent(String(event.score))}`;
}

function matches(event) {
  if (filters.camera && event.camera !== filters.camera) return false;
  if (filters.label && event.label !== filters.label) return false;
  const start = Date.parse(event.start_time);
  if (filters.since && start < Date.parse(filters.since)) return false;
  if (filters.until && start >= Date.parse(filters.until)) return false; // until is exclusive, as on the server
  return true;
}

function thumbnail(event) {
  if (!event.snapshot) return el("span", { class: "thumb none", "aria-hidden": "true" }, "no snapshot");
  const img = el("img", { class: "thumb", alt: "", loading: "lazy", width: 96, height: 72, src: snapshotUrl(event) });
  let retried = false;
  img.addEventListener("error", () => {
    if (!retried) {
      retried = true; // the snapshot file may land a moment after the event: one retry
      setTimeout(() => {
        img.src = `${snapshotUrl(event)}&retry=1`;
      }, 1000);
    } else {
      img.replaceWith(el("span", { class: "thumb none", "aria-hidden": "true" }, "no snapshot"));
    }
  });
  return img;
}

function renderRow(event) {
  const ongoing = !event.end_time;
  const duration = formatDuration(event.start_time, event.end_time);
  return el(
    "li",
    { class: `event ${event.label}`, dataset: { id: event.id, camera: event.camera, label: event.label } },
    el(
      "button",
      { type: "button", class: "event-open", onclick: () => openDetail(event.id), "aria-label": `Details of event ${event.id}` },
      thumbnail(event),
      el(
        "span",
        { class: "event-text" },
        el("span", { class: `badge ${event.label}` }, labelText(event.label)),
        el("span", { class: "event-camera" }, event.camera),
        el("time", { datetime: event.start_time }, formatTime(event.start_time)),
        el("span", { class: "event-state" }, ongoing ? "ongoing" : `ended${duration ? ` after ${duration}` : ""}`),
        el("span", { class: "event-score" }, `score ${Number(event.score).toFixed(2)}`),
      ),
    ),
  );
}

function place(row, event) {
  // newest first by start time
  for (const other of list.children) {
    const entry = rows.get(other.dataset.id);
    if (entry && entry.event.start_time < event.start_time) {
      list.insertBefore(row, other);
      return;
    }
  }
  list.append(row);
}

function upsert(event) {
  const known = rows.get(event.id);
  if (!matches(event)) {
    if (known) {
      known.row.remove();
      rows.delete(event.id);
    }
    return;
  }
  const row = renderRow(event);
  if (known) known.row.replaceWith(row);
  else place(row, event);
  rows.set(event.id, { event, row });
  while (rows.size > LIMIT) {
    const last = list.lastElementChild;
    rows.delete(last.dataset.id);
    last.remove();
  }
  showSummary();
}

function showSummary() {
  const open = [...rows.values()].filter((r) => !r.event.end_time).length;
  const any = filters.camera || filters.label || filters.since || filters.until;
  summary.textContent =
    rows.size === 0
      ? any ? "No events match the filters." : "No events yet."
      : `${rows.size} event${rows.size === 1 ? "" : "s"}${any ? " matching the filters" : ""}, ${open} ongoing.`;
}

async function load() {
  loading?.abort();
  const controller = new AbortController();
  loading = controller;
  try {
    const events = await api(`api/events${query({ ...filters, limit: LIMIT })}`, { signal: controller.signal });
    rows.clear();
    list.replaceChildren();
    for (const event of events) upsert(event);
    errorBox.hidden = true;
    showSummary();
  } catch (error) {
    if (error.name === "AbortError") return;
    errorBox.textContent = `Could not load events: ${error.message}`;
    errorBox.hidden = false;
  }
}

function setConn(state, text) {
  conn.dataset.state = state;
  conn.textContent = text;
}

function onMessage(message) {
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    return;
  }
  if (event && typeof event.id === "string") {
    upsert(event);
    document.dispatchEvent(new CustomEvent("maskwatch:event", { detail: { type: message.type, event } }));
  }
}

function connect() {
  source?.close();
  source = new EventSource("api/events/stream");
  let failed = false;
  source.addEventListener("open", () => {
    setConn("live", "live");
    if (failed) load(); // events may have come and gone while disconnected
  });
  for (const type of ["start", "new", "update", "end"]) source.addEventListener(type, onMessage);
  source.addEventListener("error", async () => {
    failed = true;
    setConn("lost", "reconnecting…");
    if (source.readyState === EventSource.CLOSED) {
      // the browser gave up (an HTTP error such as 401): ask the API why, which redirects to login on 401
      try {
        await api("api/cameras");
      } catch (error) {
        if (error instanceof ApiError && error.status === 401) return;
      }
      setTimeout(connect, RETRY_MS);
    }
  });
}

/** The event's box over its snapshot (the snapshot is the camera frame, so the box is in its pixels). */
function outline(img, box) {
  const overlay = document.getElementById("detail-box");
  if (!Array.isArray(box) || box.length !== 4 || !img.naturalWidth) return;
  const [x1, y1, x2, y2] = box.map(Number);
  overlay.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
  const rect = overlay.querySelector("rect");
  for (const [key, value] of Object.entries({ x: x1, y: y1, width: x2 - x1, height: y2 - y1 })) rect.setAttribute(key, String(value));
  overlay.removeAttribute("hidden");
}

async function openDetail(id) {
  const dialog = document.getElementById("detail");
  const img = document.getElementById("detail-img");
  const fields = document.getElementById("detail-fields");
  const error = document.getElementById("detail-error");
  const heading = document.getElementById("detail-h");
  heading.textContent = "Event";
  fields.replaceChildren();
  img.hidden = true;
  img.removeAttribute("src");
  document.getElementById("detail-box").setAttribute("hidden", ""); // an SVG element has no .hidden property
  error.hidden = true;
  dialog.dataset.id = id;
  if (!dialog.open) dialog.showModal();
  let event;
  try {
    event = await api(`api/events/${encodeURIComponent(id)}`);
  } catch (failure) {
    error.textContent = `Could not load event ${id}: ${failure.message}`;
    error.hidden = false;
    return;
  }
  if (dialog.dataset.id !== id) return; // another event was opened meanwhile
  heading.textContent = `${labelText(event.label)} on ${event.camera}`;
  if (event.snapshot) {
    img.alt = `Snapshot of event ${event.id}: ${labelText(event.label)} on camera ${event.camera}`;
    img.onerror = () => {
      img.hidden = true;
      error.textContent = "The snapshot is not available (retention, disk, or another node has it).";
      error.hidden = false;
    };
    img.onload = () => outline(img, event.box);
    img.src = snapshotUrl(event);
    img.hidden = false;
  }
  const items = [
    ["Event", event.id],
    ["Camera", event.camera],
    ["Label", `${labelText(event.label)} (${event.label})`],
    ["Score", Number(event.score).toFixed(4)],
    ["Started", formatTime(event.start_time)],
    ["Ended", event.end_time ? formatTime(event.end_time) : "ongoing"],
    ["Duration", formatDuration(event.start_time, event.end_time) ?? "—"],
    ["Track", String(event.track_id)],
    ["Box (x1, y1, x2, y2)", Array.isArray(event.box) ? event.box.map((v) => Number(v).toFixed(1)).join(", ") : "—"],
    ["Node", event.node],
  ];
  fields.replaceChildren(...items.flatMap(([key, value]) => [el("dt", {}, key), el("dd", {}, value ?? "—")]));
}

export function setCameraChoices(names) {
  const select = document.getElementById("f-camera");
  const have = [...select.options].map((o) => o.value).filter(Boolean);
  if (names.length === have.length && names.every((n, i) => n === have[i])) return;
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, "all"), ...names.map((n) => el("option", { value: n }, n)));
  if (chosen && !names.includes(chosen)) select.append(el("option", { value: chosen }, chosen));
  select.value = chosen;
}

export function startEvents() {
  list = document.getElementById("event-list");
  summary = document.getElementById("events-summary");
  errorBox = document.getElementById("events-error");
  conn = document.getElementById("conn");
  const form = document.getElementById("filters");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(form);
    filters = {
      camera: data.get("camera") ?? "",
      label: data.get("label") ?? "",
      since: localToIso(data.get("since")),
      until: localToIso(data.get("until")),
    };
    load();
  });
  form.addEventListener("reset", () => {
    filters = { camera: "", label: "", since: "", until: "" };
    setTimeout(load); // after the browser has cleared the inputs
  });
  for (const select of form.querySelectorAll("select")) select.addEventListener("change", () => form.requestSubmit());
  document.getElementById("detail").addEventListener("close", () => {
    delete document.getElementById("detail").dataset.id;
  });
  load();
  connect();
}
