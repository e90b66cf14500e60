// maskwatch dashboard: cameras, live events, hourly compliance and an image check, on the service's own API.
// Standard ES modules, no build step, no third-party code; every text from the API goes in as text, never HTML.

import { api, toLogin } from "./api.js";
import { startCameras } from "./cameras.js";
import { startChart } from "./chart.js";
import { setCameraChoices, startEvents } from "./events.js";
import { startUpload } from "./upload.js";

async function logout() {
  try {
    await api("api/logout", { method: "POST" });
  } catch {
    // logged out already, or the server is gone: the login page is the right place either way
  }
  toLogin();
}

function startHeader() {
  const button = document.getElementById("logout");
  button.hidden = true;
  button.addEventListener("click", logout);
  // the server says whether it needs a token and how this page got in: only a login session has a logout
  api("api/session")
    .then((session) => {
      button.hidden = !(session?.auth && session.via === "session");
    })
    .catch(() => {});
  api("healthz")
    .then((health) => {
      document.getElementById("node").textContent = health?.node ? `node ${health.node}` : "";
    })
    .catch(() => {});
}

startHeader();
startCameras({ changed: setCameraChoices });
startEvents();
startChart();
startUpload();
document.documentElement.dataset.ready = "true";
