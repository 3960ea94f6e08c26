// The status page's live parts: the board refreshes itself (often while jobs run), and an
// admin's deploy shows its progress from GET /jobs/{id}/events. Plain DOM, no framework.
"use strict";

const ADMIN = document.body.dataset.admin === "true";
// Cookie-borne writes must carry this header (see gateway/web/auth.py).
const HEADERS = { "X-Requested-With": "notebook-gateway" };
const PHASES = ["waiting", "fetching", "building", "pushing", "starting", "ready", "removing",
  "publishing", "failed", "done"];
const MAX_LOG_LINES = 800;

let refreshTimer = null;
let following = null; // the EventSource of the job shown in the progress panel

function board() { return document.getElementById("board"); }

function activeJobs() {
  const section = board() && board().querySelector("[data-active-jobs]");
  return section ? Number(section.dataset.activeJobs) : 0;
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const busy = following !== null || activeJobs() > 0;
  refreshTimer = setTimeout(refresh, busy ? 2000 : 15000);
}

async function refresh() {
  try {
    const response = await fetch("/status/board", { headers: HEADERS, credentials: "same-origin" });
    if (response.ok && board()) board().innerHTML = await response.text();
  } finally {
    scheduleRefresh();
  }
}

async function call(method, path, body) {
  const options = { method, headers: { ...HEADERS }, credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(data && data.error ? data.error.message : response.statusText);
  return data;
}

async function deploy(project) {
  try {
    const job = await call("POST", "/projects?wait=false", { project, action: "update" });
    follow(job.id);
  } catch (error) {
    showProgressError(error.message);
  }
}

function el(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function setBadge(node, state) {
  node.classList.remove(...PHASES, "queued", "running", "succeeded", "coalesced", "removed");
  node.classList.add("badge", state);
  node.textContent = state;
}

function notebookRow(name) {
  const body = document.querySelector("#progress-notebooks tbody");
  let row = Array.from(body.rows).find((r) => r.dataset.notebook === name);
  if (!row) {
    row = el("tr", { "data-notebook": name });
    const phase = el("td");
    phase.append(el("span", { class: "badge phase" }));
    row.append(el("td", {}, name), phase, el("td", { class: "step" }), el("td", { class: "link" }));
    body.append(row);
  }
  return row;
}

function appendLog(line) {
  const log = document.getElementById("progress-log");
  const where = line.notebook ? ` [${line.notebook}]` : "";
  log.append(`${line.at.slice(11, 19)} ${line.phase}${where} ${line.message}\n`);
  while (log.childNodes.length > MAX_LOG_LINES) log.removeChild(log.firstChild);
  log.scrollTop = log.scrollHeight;
}

function follow(jobId) {
  if (following) following.close();
  const panel = document.getElementById("progress");
  panel.hidden = false;
  document.getElementById("progress-job").textContent = jobId;
  setBadge(document.getElementById("progress-state"), "running");
  document.querySelector("#progress-notebooks tbody").replaceChildren();
  document.getElementById("progress-log").replaceChildren();

  const source = new EventSource(`/jobs/${encodeURIComponent(jobId)}/events`);
  following = source;
  const onLine = (event) => {
    const line = JSON.parse(event.data);
    if (line.final) return finish(source, line);
    appendLog(line);
    if (line.notebook && !line.output) {
      const row = notebookRow(line.notebook);
      setBadge(row.querySelector(".phase"), line.phase);
      row.querySelector(".step").textContent = line.message;
    }
  };
  for (const phase of PHASES) source.addEventListener(phase, onLine);
  source.addEventListener("end", (event) => finish(source, JSON.parse(event.data)));
  scheduleRefresh();
}

function finish(source, data) {
  source.close();
  if (following === source) following = null;
  const state = document.getElementById("progress-state");
  if (!data.job) {
    setBadge(state, "failed");
    appendLog({ at: new Date().toISOString(), phase: "failed", message: data.reason });
    return refresh();
  }
  setBadge(state, data.job.state);
  if (data.job.state === "succeeded") {  // what is no notebook of its own (an environment)
    const outcomes = new Set(data.job.notebooks.map((n) => n.name));
    for (const row of document.querySelectorAll("#progress-notebooks tbody tr")) {
      if (!outcomes.has(row.dataset.notebook)) setBadge(row.querySelector(".phase"), "done");
    }
  }
  for (const notebook of data.job.notebooks) {
    const row = notebookRow(notebook.name);
    setBadge(row.querySelector(".phase"), notebook.state);
    row.querySelector(".step").textContent = notebook.message || notebook.action;
    const cell = row.querySelector(".link");
    cell.replaceChildren();
    if (notebook.url && notebook.state === "running") {
      cell.append(el("a", { href: notebook.url, target: "_blank", rel: "noopener",
        class: "open-link" }, "Open"));
    }
  }
  if (data.job.error) {
    appendLog({ at: new Date().toISOString(), phase: "failed", message: data.job.error.message });
  }
  return refresh();
}

function showProgressError(message) {
  document.getElementById("progress").hidden = false;
  setBadge(document.getElementById("progress-state"), "failed");
  appendLog({ at: new Date().toISOString(), phase: "failed", message });
}

async function showLogs(name) {
  const dialog = document.getElementById("logs-dialog");
  document.getElementById("logs-title").textContent = name;
  const text = document.getElementById("logs-text");
  text.textContent = "loading…";
  dialog.showModal();
  try {
    const logs = await call("GET", `/logs/${encodeURIComponent(name)}?max_lines=500`);
    text.textContent = logs["jupyter-server"] || "(empty)";
  } catch (error) {
    text.textContent = error.message;
  }
}

async function stop(name) {
  if (!window.confirm(`Stop ${name}?`)) return;
  try {
    await call("DELETE", `/servers/${encodeURIComponent(name)}`);
  } catch (error) {
    window.alert(error.message);
  }
  refresh();
}

async function removeVolume(name) {
  if (!window.confirm(`Remove ${name}? Its files are gone for good.`)) return;
  try {
    await call("DELETE", `/volumes/${encodeURIComponent(name)}`);
  } catch (error) {
    window.alert(error.message);
  }
  refresh();
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || !ADMIN) return;
  const { action, project, server, job, volume } = button.dataset;
  if (action === "deploy") deploy(project);
  else if (action === "watch") follow(job);
  else if (action === "logs") showLogs(server);
  else if (action === "stop") stop(server);
  else if (action === "remove-volume") removeVolume(volume);
  else if (action === "reconcile") {
    call("POST", "/reconcile?wait=false").then((j) => follow(j.id), (e) => showProgressError(e.message));
  }
});

const form = document.getElementById("deploy-form");
if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    deploy(form.elements.project.value.trim());
  });
}
// Logging out is a change made with the session cookie: it carries the page's header.
const logout = document.getElementById("logout-form");
if (logout) {
  logout.addEventListener("submit", async (event) => {
    event.preventDefault();
    await fetch("/logout", { method: "POST", headers: HEADERS, credentials: "same-origin" });
    window.location.assign("/");
  });
}
scheduleRefresh();
