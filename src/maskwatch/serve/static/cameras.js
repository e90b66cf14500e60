// The camera grid: one card per camera with its live annotated view, status, FPS and people counts.
//
// The live view is the MJPEG stream; a browser keeps about six connections per host over HTTP/1.1 and each
// stream holds one for good, so only the first MAX_STREAMS cameras stream and the others (and any stream that
// fails) show latest.jpg refreshed every REFRESH_MS.

import { api, el, formatTime } from "./api.js";

const POLL_MS = 2000;
const REFRESH_MS = 1000;
export const MAX_STREAMS = 3;

const cards = new Map(); // camera name -> {card, img, fields}
let onCamerasChanged = () => {};

function cameraPath(name, file) {
  return `api/cameras/${encodeURIComponent(name)}/${file}`;
}

function startRefreshing(entry) {
  if (entry.timer) return;
  entry.mode = "latest";
  if (entry.img.src.includes("/stream")) entry.img.removeAttribute("src"); // close the stream's connection
  entry.card.dataset.view = "latest";
  const tick = () => {
    // a new Image first, swapped in when loaded: no flicker, and a failed frame keeps the last good one
    const next = new Image();
    next.onload = () => {
      entry.img.src = next.src;
    };
    next.src = `${cameraPath(entry.name, "latest.jpg")}?t=${Date.now()}`;
  };
  tick();
  entry.timer = setInterval(tick, REFRESH_MS);
}

function startStream(entry, fresh = false) {
  entry.mode = "stream";
  entry.card.dataset.view = "stream";
  const img = entry.img;
  img.onerror = () => {
    if (entry.mode === "stream" && img.src.includes("/stream")) startRefreshing(entry);
  };
  img.src = cameraPath(entry.name, "stream") + (fresh ? `?t=${Date.now()}` : "");
}

function createCard(name, index) {
  const img = el("img", { class: "live", alt: `Live view of camera ${name}`, width: 640, height: 480, decoding: "async" });
  const status = el("span", { class: "status" });
  const fields = {
    status,
    reason: el("span", { class: "reason" }),
    fps: el("dd"),
    seen: el("dd"),
    compliant: el("dd"),
    nonCompliant: el("dd"),
    last: el("dd"),
  };
  const card = el(
    "li",
    { class: "camera", dataset: { camera: name } },
    el("h3", {}, el("span", { class: "name" }, name), " ", status),
    el("div", { class: "view" }, img),
    fields.reason,
    el(
      "dl",
      { class: "figures" },
      el("div", {}, el("dt", {}, "FPS"), fields.fps),
      el("div", {}, el("dt", {}, "People seen"), fields.seen),
      el("div", { class: "ok" }, el("dt", {}, "Compliant"), fields.compliant),
      el("div", { class: "bad" }, el("dt", {}, "Non-compliant"), fields.nonCompliant),
      el("div", { class: "wide" }, el("dt", {}, "Last frame"), fields.last),
    ),
  );
  const entry = { name, card, img, fields, timer: null, mode: null, wantStream: index < MAX_STREAMS };
  return entry; // the view starts with the first status: see update()
}

function update(entry, camera) {
  const { fields, card } = entry;
  if (entry.wantStream && camera.status === "online" && card.dataset.status !== "online") {
    // online (again): a fresh stream, also after a stream that failed while the camera was starting or offline
    clearInterval(entry.timer);
    entry.timer = null;
    startStream(entry, card.dataset.status !== undefined);
  } else if ((camera.status !== "online" || !entry.wantStream) && !entry.timer) {
    startRefreshing(entry); // not streamed, or starting/offline: its last picture, if any, and no stream held open
  }
  card.dataset.status = camera.status;
  fields.status.textContent = camera.status;
  fields.status.className = `status ${camera.status}`;
  fields.reason.textContent = camera.status === "online" || !camera.reason ? "" : camera.reason;
  fields.fps.textContent = Number(camera.fps ?? 0).toFixed(1);
  const counts = camera.counts ?? {};
  fields.seen.textContent = String(counts.people_seen ?? 0);
  fields.compliant.textContent = String(counts.compliant ?? 0);
  fields.nonCompliant.textContent = String(counts.non_compliant ?? 0);
  fields.last.textContent = formatTime(camera.last_frame_time);
}

async function poll(grid, empty) {
  let list;
  try {
    list = await api("api/cameras");
  } catch (error) {
    for (const entry of cards.values()) entry.card.dataset.stale = "true";
    return;
  }
  const names = list.map((c) => c.name);
  list.forEach((camera, index) => {
    let entry = cards.get(camera.name);
    if (!entry) {
      entry = createCard(camera.name, index);
      cards.set(camera.name, entry);
      grid.append(entry.card);
    }
    delete entry.card.dataset.stale;
    update(entry, camera);
  });
  for (const [name, entry] of cards) {
    if (!names.includes(name)) {
      clearInterval(entry.timer);
      entry.img.removeAttribute("src");
      entry.card.remove();
      cards.delete(name);
    }
  }
  empty.hidden = cards.size > 0;
  onCamerasChanged(names);
}

export function startCameras({ changed }) {
  onCamerasChanged = changed;
  const grid = document.getElementById("camera-grid");
  const empty = document.getElementById("cameras-empty");
  const loop = async () => {
    await poll(grid, empty);
    setTimeout(loop, POLL_MS);
  };
  loop();
}
