// Talking to the maskwatch API: same-origin fetch, the CSRF header on every state-changing request,
// a redirect to the login page on 401, and small DOM helpers that only ever set text (never HTML).
// URLs are relative, so the page also works behind a reverse proxy under a path prefix.

export const LABELS = {
  with_mask: "mask",
  without_mask: "no mask",
  mask_incorrect: "mask worn wrong",
};

export function labelText(label) {
  return LABELS[label] ?? String(label);
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

let redirecting = false;

export function toLogin() {
  if (redirecting) return;
  redirecting = true;
  location.assign("login");
}

/** The error text of a JSON error body: FastAPI's {"detail": "..."} or its list of validation errors. */
export function detailText(body, status) {
  const detail = body && typeof body === "object" ? body.detail : null;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => [Array.isArray(d.loc) ? d.loc.join(".") : "", d.msg].filter(Boolean).join(": ")).join("; ");
  }
  return `HTTP ${status}`;
}

/** fetch + JSON; POST and other unsafe methods carry X-CSRF-Token from the maskwatch_csrf cookie. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    const token = cookie("maskwatch_csrf");
    if (token) headers["X-CSRF-Token"] = token;
  }
  const response = await fetch(path, { method, body, headers, signal, credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    toLogin();
    throw new ApiError(401, "not logged in");
  }
  const type = response.headers.get("content-type") ?? "";
  const data = type.includes("json") ? await response.json().catch(() => null) : null;
  if (!response.ok) throw new ApiError(response.status, detailText(data, response.status));
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** document.createElement with properties and children; strings become text nodes (escaped by the DOM). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false).map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function formatDuration(startIso, endIso) {
  if (!startIso || !endIso) return null;
  const seconds = (new Date(endIso) - new Date(startIso)) / 1000;
  if (!Number.isFinite(seconds) || seconds < 0) return null;
  return seconds < 90 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds / 60)} min`;
}

/** A datetime-local input's value (local time) as ISO 8601 UTC, or "" when empty. */
export function localToIso(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}
