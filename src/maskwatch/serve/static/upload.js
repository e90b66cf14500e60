// The upload box: POST api/detect (multipart field "file"), then the image with its faces drawn on a canvas
// here in the browser, and a table of the faces. Refusals (413, 415, 422, 429) show the server's reason.

import { api, ApiError, el, labelText } from "./api.js";

const COLOURS = { with_mask: "#1a7f37", without_mask: "#cf222e", mask_incorrect: "#bf8700" };
const REASONS = {
  413: "The file is too large.",
  415: "That file is not an image.",
  422: "The image could not be used.",
  429: "The server is busy with other images; try again in a moment.",
};

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve({ img, url });
    img.onerror = () => {
      URL.revokeObjectURL(url);
      reject(new Error("the browser cannot show this image"));
    };
    img.src = url;
  });
}

function draw(canvas, img, result) {
  const width = result.width || img.naturalWidth;
  const height = result.height || img.naturalHeight;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, width, height);
  const line = Math.max(2, Math.round(Math.max(width, height) / 300));
  const fontSize = Math.max(12, Math.round(Math.max(width, height) / 40));
  ctx.font = `600 ${fontSize}px system-ui, sans-serif`;
  ctx.textBaseline = "bottom";
  for (const face of result.faces ?? []) {
    const [x1, y1, x2, y2] = face.box.map(Number);
    const colour = COLOURS[face.label] ?? "#0969da";
    ctx.lineWidth = line;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${labelText(face.label)} ${Number(face.score).toFixed(2)}`;
    const textWidth = ctx.measureText(text).width + 8;
    const top = y1 - fontSize - 6 >= 0 ? y1 - fontSize - 6 : y2;
    ctx.fillStyle = colour;
    ctx.fillRect(x1 - line / 2, top, textWidth, fontSize + 6);
    ctx.fillStyle = "#ffffff";
    ctx.fillText(text, x1 + 4 - line / 2, top + fontSize + 4);
  }
}

function describe(result) {
  const faces = result.faces ?? [];
  if (faces.length === 0) return `${result.source ?? "The image"}: no faces found.`;
  const counts = {};
  for (const f of faces) counts[f.label] = (counts[f.label] ?? 0) + 1;
  const parts = Object.entries(counts).map(([label, n]) => `${n} ${labelText(label)}`);
  return `${result.source ?? "The image"}: ${faces.length} face${faces.length === 1 ? "" : "s"} — ${parts.join(", ")}.`;
}

export function startUpload() {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("upload-file");
  const drop = document.getElementById("drop");
  const submit = document.getElementById("upload-submit");
  const errorBox = document.getElementById("upload-error");
  const summary = document.getElementById("upload-summary");
  const canvas = document.getElementById("upload-canvas");
  const table = document.getElementById("upload-faces");

  const showError = (text) => {
    errorBox.textContent = text;
    errorBox.hidden = false;
  };

  const send = async (file) => {
    errorBox.hidden = true;
    summary.textContent = `Checking ${file.name}…`;
    submit.disabled = true;
    const body = new FormData();
    body.append("file", file, file.name);
    try {
      const result = await api("api/detect", { method: "POST", body });
      if (result?.error) throw new ApiError(422, result.error);
      const { img, url } = await loadImage(file);
      draw(canvas, img, result);
      URL.revokeObjectURL(url);
      canvas.hidden = false;
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", describe(result));
      summary.textContent = describe(result);
      table.tBodies[0].replaceChildren(
        ...(result.faces ?? []).map((face, i) =>
          el(
            "tr",
            { class: face.label },
            el("td", {}, String(i + 1)),
            el("td", {}, labelText(face.label)),
            el("td", {}, Number(face.score).toFixed(3)),
            el("td", {}, face.box.map((v) => Math.round(Number(v))).join(", ")),
          ),
        ),
      );
      table.hidden = (result.faces ?? []).length === 0;
      canvas.dataset.faces = String((result.faces ?? []).length);
    } catch (error) {
      summary.textContent = "";
      canvas.hidden = true;
      table.hidden = true;
      const reason = error instanceof ApiError ? REASONS[error.status] : null;
      showError(`Could not check ${file.name}: ${reason ? `${reason} (${error.message})` : error.message}`);
    } finally {
      submit.disabled = false;
    }
  };

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const file = input.files?.[0];
    if (file) send(file);
  });
  input.addEventListener("change", () => {
    if (input.files?.[0]) send(input.files[0]);
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer?.files?.[0];
    if (file) send(file);
  });
}
