// Palisade's dashboard: the connectivity graph, the alerts (live, over
// server-sent events) and the sinks' health. Plain JavaScript, no build.
"use strict";

const state = { token: localStorage.getItem("palisade-token") || "", cy: null, filters: {} };

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function api(path) {
  const response = await fetch(path, { headers: headers() });
  if (response.status === 401 || response.status === 403) {
    document.getElementById("token-box").hidden = false;
    throw new Error("the server wants a token with the read scope");
  }
  if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
  return response.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

// ---- pages ----
document.querySelectorAll("nav button").forEach((b) =>
  b.addEventListener("click", () => {
    document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".page").forEach((p) => (p.hidden = p.id !== "page-" + b.dataset.page));
    if (b.dataset.page === "graph" && state.cy) state.cy.resize();
  })
);
document.getElementById("token-save").addEventListener("click", () => {
  state.token = document.getElementById("token").value.trim();
  localStorage.setItem("palisade-token", state.token);
  document.getElementById("token-box").hidden = true;
  start();
});

// ---- graph ----
const COLOURS = {
  bypass: "rgb(221,0,0)",
  "blocked-attempt": "#3366cc",
  "unexpected-drop": "#ff8800",
  unresolved: "#999999",
  declared: "#c8d6c8",
};

async function loadGraph() {
  const started = performance.now();
  const params = new URLSearchParams();
  const ns = document.getElementById("graph-namespace").value.trim();
  const windowSeconds = document.getElementById("graph-window").value;
  if (ns) params.set("namespace", ns);
  if (windowSeconds) params.set("since", new Date(Date.now() - windowSeconds * 1000).toISOString());
  const graph = await api("/api/v1/graph?" + params);
  const elements = [];
  for (const n of graph.nodes) elements.push({ group: "nodes", data: { id: n.id, label: n.label, parent: n.parent, kind: n.kind } });
  for (const e of graph.edges) elements.push({ group: "edges", data: e });
  if (state.cy) state.cy.destroy();
  const big = graph.nodes.length > 150;
  state.cy = cytoscape({
    container: document.getElementById("graph"),
    elements,
    wheelSensitivity: 0.3,
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 9, "background-color": "#607d8b", width: 14, height: 14 } },
      { selector: "node[kind = 'external']", style: { "background-color": "#8d6e63" } },
      { selector: ":parent", style: { "background-color": "#eef2f5", "border-color": "#b0bec5", "text-valign": "top", "font-size": 11, "font-weight": "bold" } },
      { selector: "edge", style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle", "arrow-scale": 0.7 } },
      ...Object.entries(COLOURS).map(([cls, colour]) => ({
        selector: `edge[class = '${cls}']`,
        style: { "line-color": colour, "target-arrow-color": colour },
      })),
      { selector: "edge[class = 'blocked-attempt']", style: { "line-style": "dashed" } },
      { selector: "edge[class = 'bypass']", style: { width: 3, label: "data(label)", "font-size": 8, color: "rgb(221,0,0)" } },
      { selector: "edge[class = 'declared']", style: { width: 1, opacity: 0.6 } },
      { selector: "edge:selected", style: { width: 5 } },
    ],
    layout: big ? { name: "grid", avoidOverlap: true } : { name: "cose", animate: false, nodeDimensionsIncludeLabels: true },
  });
  state.cy.on("tap", "edge", (event) => showEdge(event.target.data()));
  window.palisadeCy = state.cy;
  const ms = Math.round(performance.now() - started);
  const observed = graph.edges.filter((e) => e.class !== "declared").length;
  document.getElementById("graph-info").textContent =
    `${graph.nodes.length} nodes (${graph.level}), ${graph.edges.length} edges, ${observed} observed; drawn in ${ms} ms`;
  // For the render benchmark: since the page began to load.
  const sincePageStart = Math.round(performance.now());
  window.palisadeGraph = { nodes: graph.nodes.length, edges: graph.edges.length, level: graph.level, ms, sincePageStart };
}

function showEdge(e) {
  const box = document.getElementById("edge-detail");
  box.replaceChildren(
    el("h3", {}, `${e.class}: ${e.source} → ${e.target}`),
    el("p", {}, `${e.label} — ${e.count} ${e.class === "declared" ? "entries" : "connections"}`)
  );
  if (e.summary) box.append(el("p", {}, e.summary));
  if (e.alert_id) box.append(el("p", {}, "alert " + e.alert_id));
  if (e.decision) box.append(el("h4", {}, "Policy decision"), el("pre", {}, JSON.stringify(e.decision, null, 2)));
  else if (e.class === "declared") box.append(el("p", {}, "Allowed by the declared policies."));
}

// ---- alerts ----
function readFilters() {
  const f = {};
  for (const k of ["namespace", "rule", "severity", "class"]) {
    const v = document.getElementById("f-" + k).value.trim();
    if (v) f[k] = v;
  }
  state.filters = f;
}

const RANK = { info: 0, low: 1, medium: 2, high: 3, critical: 4 };

function matches(a) {
  const f = state.filters;
  if (f.rule && a.rule !== f.rule) return false;
  if (f.severity && RANK[a.severity] < RANK[f.severity]) return false;
  if (f.class && classOf(a.rule) !== f.class) return false;
  if (f.namespace && (a.src || {}).namespace !== f.namespace && (a.dst || {}).namespace !== f.namespace) return false;
  return true;
}

function classOf(rule) {
  return { "FLOW-001": "bypass", "FLOW-002": "unexpected-drop", "FLOW-003": "blocked-attempt", "FLOW-004": "unresolved" }[rule] || "";
}

function side(s) {
  if (!s) return "?";
  return s.workload || (s.node && "node/" + s.node) || s.ip || [s.namespace, s.pod].filter(Boolean).join("/") || "?";
}

function row(a, fresh) {
  const tr = el(
    "tr",
    { class: a.severity + (fresh ? " fresh" : ""), "data-id": a.id },
    el("td", {}, a.first_seen || a.time || ""),
    el("td", {}, a.rule),
    el("td", {}, a.severity),
    el("td", {}, `${side(a.src)} → ${side(a.dst)}${a.port ? ":" + a.port : ""}`),
    el("td", {}, String(a.connections || 1)),
    el("td", {}, a.summary)
  );
  return tr;
}

async function loadAlerts() {
  readFilters();
  const params = new URLSearchParams({ ...state.filters, limit: 500 });
  const listed = await api("/api/v1/alerts?" + params);
  const body = document.querySelector("#alerts tbody");
  body.replaceChildren(...listed.alerts.map((l) => row(l.alert, false)));
  histogram(listed.alerts.map((l) => l.alert));
}

function histogram(alerts) {
  const box = document.getElementById("histogram");
  const times = alerts.map((a) => Date.parse(a.first_seen || a.time)).filter((t) => !isNaN(t));
  box.replaceChildren();
  if (!times.length) return;
  const lo = Math.min(...times), hi = Math.max(...times) + 1, n = 48;
  const bins = new Array(n).fill(0);
  for (const t of times) bins[Math.floor(((t - lo) / (hi - lo)) * n)]++;
  const top = Math.max(...bins);
  for (const b of bins) box.append(el("div", { style: `height:${(100 * b) / top}%`, title: String(b) }));
}

function live() {
  const url = "/api/v1/events" + (state.token ? "?access_token=" + encodeURIComponent(state.token) : "");
  const source = new EventSource(url);
  const says = document.getElementById("live-state");
  source.addEventListener("open", () => (says.textContent = "live"));
  source.addEventListener("error", () => (says.textContent = "reconnecting…"));
  source.addEventListener("alert", (event) => {
    const a = JSON.parse(event.data);
    if (!matches(a)) return;
    const body = document.querySelector("#alerts tbody");
    const old = body.querySelector(`tr[data-id="${CSS.escape(a.id)}"]`);
    if (old) old.remove();
    body.prepend(row(a, true));
    window.palisadeLive = (window.palisadeLive || 0) + 1;
  });
}

// ---- findings (the latest audit run of each origin) ----
async function loadFindings() {
  const params = new URLSearchParams();
  const ns = document.getElementById("g-namespace").value.trim();
  const severity = document.getElementById("g-severity").value;
  if (ns) params.set("namespace", ns);
  if (severity) params.set("severity", severity);
  const { runs } = await api("/api/v1/findings?" + params);
  const scores = document.getElementById("scores");
  const body = document.querySelector("#findings tbody");
  scores.replaceChildren();
  body.replaceChildren();
  for (const r of runs) {
    const entries = Object.entries((r.summary || {}).namespace_scores || {}).sort((a, b) => a[1] - b[1]);
    scores.append(
      el("h3", {}, `${r.run.origin} — audit of ${r.run.time}: ${r.run.findings} findings`),
      el("div", { class: "score-row" }, ...entries.map(([name, score]) =>
        el("span", { class: "score " + (score < 50 ? "bad" : score < 80 ? "fair" : "good") }, `${name} ${score}`)))
    );
    for (const f of r.findings) {
      const res = f.resource || {};
      body.append(el("tr", { class: f.severity }, el("td", {}, f.severity), el("td", {}, f.check),
        el("td", {}, `${res.kind}/${res.namespace ? res.namespace + "/" : ""}${res.name}`), el("td", {}, f.message)));
    }
  }
  document.getElementById("findings-info").textContent = runs.length ? "" : "no audit run yet: palisade audit PATH --send URL";
  window.palisadeFindings = body.children.length;
}
document.getElementById("g-apply").addEventListener("click", () => loadFindings().catch(report));

// ---- sinks ----
async function loadSinks() {
  const box = document.getElementById("sinks");
  try {
    const { sinks } = await api("/api/v1/sinks");
    box.replaceChildren(
      ...sinks.map((s) => {
        const cls = s.dead > 0 ? "failing" : s.pending > 0 ? "waiting" : "";
        const title = s.last_error ? "last error: " + s.last_error : "";
        return el("span", { class: "sink " + cls, title }, `${s.name}: ${s.delivered} sent, ${s.pending} waiting, ${s.dead} dead`);
      })
    );
  } catch (e) {
    box.textContent = e.message;
  }
}

document.getElementById("graph-reload").addEventListener("click", () => loadGraph().catch(report));
document.getElementById("f-apply").addEventListener("click", () => loadAlerts().catch(report));

function report(e) {
  document.getElementById("graph-info").textContent = e.message;
  window.palisadeError = e.message;
}

function start() {
  loadGraph().catch(report);
  loadAlerts().catch(report);
  loadFindings().catch(report);
  loadSinks();
  live();
}

setInterval(loadSinks, 5000);
start();
