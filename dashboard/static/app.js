// The live dashboard: one EventSource on /events; each "state" event is the projection's
// snapshot (rooms, staff, waiting lists, tiles) and the time-series points since the last.
"use strict";
const ROLES = ["porter", "medical", "cleaner"];
const ROLE_COLOURS = { porter: "#1f77b4", medical: "#ff7f0e", cleaner: "#2ca02c" };  // plotly's first three
const series = [];          // every time-series point received
let hourly = [];
let byHour = [];           // figures by hour of the simulated day (0-23, days pooled)
let lastChart = 0;
let chartsDrawn = false;

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
function clock(seconds) {
  const s = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}
const pct = (x) => (100 * x).toFixed(1) + " %";
const secs = (x) => x.toFixed(1) + " s";
const short = (id) => String(id ?? "").replace("patient-", "p");
// How long, as a clock reads it: 54 s, 14:54 (min:s), 2:05:00 (h:min:s).
function span(seconds) {
  const s = Math.max(0, Math.floor(seconds)), pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)}:${pad(s % 60)}`;
  return `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}
// A patient's ESI level (1 the most urgent) and isolation need, when the page knows them.
function esiBadge(x) {
  if (x.esi == null) return "";
  const needs = x.isolation_need ? ` needs isolation` : "";
  return `<span class="esi esi-${esc(x.esi)}${x.isolation_need ? " needs" : ""}" data-esi="${esc(x.esi)}" ` +
    `title="ESI ${esc(x.esi)}${needs}">${esc(x.esi)}${x.isolation_need ? "+" : ""}</span>`;
}

function setTile(name, text) { const el = document.querySelector(`[data-tile="${name}"]`); if (el) el.textContent = text; }

function drawTiles(t) {
  setTile("arrivals", t.arrivals);
  setTile("referral_rate", pct(t.referral_rate));
  setTile("occupancy_now", pct(t.occupancy_now));
  setTile("room_occupancy", pct(t.room_occupancy));
  setTile("in_building", t.in_building);
  for (const role of ROLES) setTile("wait_" + role, secs(t.wait_mean_s[role]));
  const busy = ROLES.reduce((n, r) => n + t.busy[r], 0), staff = ROLES.reduce((n, r) => n + t.staff[r], 0);
  setTile("busy", `${busy} / ${staff}`);
  setTile("sla_breaches", t.sla_breaches ?? 0);
}

function drawRooms(floors) {
  const total = floors.reduce((n, f) => n + f.rooms.length, 0);
  const box = $("#rooms");
  box.classList.toggle("many", total > 60);
  box.innerHTML = floors.slice().reverse().map((f) =>
    `<div class="floor" data-floor="${esc(f.floor)}"><b>${esc(f.floor)}</b><div class="cells">` +
    f.rooms.map((r) => `<div class="room ${esc(r.state)}${r.isolation ? " isolation" : ""}" data-room="${esc(r.id)}" ` +
      `data-state="${esc(r.state)}" data-isolation="${r.isolation ? "true" : "false"}" ` +
      `title="${esc(r.id)}${r.isolation ? " (able to isolate)" : ""} ${esc(r.state)} ${esc(r.patient || "")}${r.esi != null ? " ESI " + esc(r.esi) : ""}${r.isolation_need ? ", needs isolation" : ""}${r.held_for ? " kept for " + esc(r.held_for) : ""}">` +
      `${esc(r.id)}${esiBadge(r)}<span class="p">${esc(short(r.patient))}</span></div>`).join("") +
    `</div></div>`).join("");
}

function drawStaff(staff) {
  $("#staff tbody").innerHTML = staff.map((s) => {
    const doing = s.task ? `${esc(s.task.kind)} ${esc(s.task.patient)} ${esiBadge(s.task)} ${esc(s.task.room)}` : (s.off_duty ? "off duty" : (s.held_until_s != null ? `held until ${s.held_until_s.toFixed(0)} s` : "idle"));
    const since = s.task ? `<span class="age" title="on this task for ${s.task.for_s.toFixed(0)} s">${span(s.task.for_s)}</span>` : "";
    return `<tr data-staff="${esc(s.id)}"><td>${esc(s.id)}</td><td>${esc(s.role)}</td>` +
      `<td class="${s.task ? "busy" : "idle"}">${doing}</td><td class="for">${since}</td><td>${esc(s.place)}</td></tr>`;
  }).join("");
}

function drawQueues(queues) {
  $("#queues").innerHTML = ROLES.map((role) => {
    const q = queues[role];
    const items = q.tasks.map((t) => `<li>${esc(t.kind)} ${esc(t.patient)} ${esiBadge(t)} ${esc(t.room)} <span class="age" title="waiting for ${t.age_s.toFixed(0)} s">${span(t.age_s)}</span></li>`).join("");
    const more = q.count > q.tasks.length ? `<li>… ${q.count - q.tasks.length} more</li>` : "";
    return `<div class="queue" data-role="${role}"><h3>${role} <b class="count">${q.count}</b></h3><ol>${items}${more}</ol></div>`;
  }).join("");
}

const LAYOUT = { margin: { l: 40, r: 10, t: 50, b: 40 }, legend: { orientation: "h", x: 0, y: 1.12 }, font: { size: 11 } };
function drawCharts(force) {
  const now = Date.now();
  if (!window.Plotly || (!force && now - lastChart < 1000)) return;
  lastChart = now;
  const hours = series.map((p) => p.t / 3600);
  Plotly.react("chart-occupancy", [{ x: hours, y: series.map((p) => p.occupied), name: "patients in rooms", mode: "lines" }],
    { ...LAYOUT, title: { text: "Rooms occupied", y: 0.97 }, xaxis: { title: { text: "hour" } } }, { displayModeBar: false });
  Plotly.react("chart-waiting", ROLES.map((r) => ({ x: hours, y: series.map((p) => p.waiting[r]), name: r, mode: "lines" })),
    { ...LAYOUT, title: { text: "Waiting lists", y: 0.97 }, xaxis: { title: { text: "hour" } } }, { displayModeBar: false });
  Plotly.react("chart-hourly", ["admitted", "referred"].map((k) => ({ x: hourly.map((h) => h.hour), y: hourly.map((h) => h[k]), name: k, type: "bar" })),
    { ...LAYOUT, barmode: "stack", title: { text: "Arrivals per hour", y: 0.97 }, xaxis: { title: { text: "hour" } } }, { displayModeBar: false });
  const hod = byHour.map((h) => h.hour);
  Plotly.react("chart-by-hour", [
    { x: hod, y: byHour.map((h) => h.referral_rate), name: "referral rate", type: "bar", marker: { color: "#c62828", opacity: 0.5 } },
    ...ROLES.map((r) => ({ x: hod, y: byHour.map((h) => h.wait_s[r].mean), name: r + " wait", mode: "lines+markers", yaxis: "y2", line: { color: ROLE_COLOURS[r] } })),
  ], { ...LAYOUT, margin: { ...LAYOUT.margin, r: 45 }, title: { text: "By hour of day (days pooled)", y: 0.97 },
       xaxis: { title: { text: "hour of day" }, range: [-0.5, 23.5], dtick: 2 },
       yaxis: { tickformat: ".0%", rangemode: "tozero" },
       yaxis2: { title: { text: "mean wait s" }, overlaying: "y", side: "right", rangemode: "tozero" } }, { displayModeBar: false });
  chartsDrawn = true;
  document.body.dataset.charts = String(series.length);
}

function onState(snap) {
  if (snap.series_from === 0) series.length = 0;
  if (snap.series_from <= series.length) { series.length = snap.series_from; series.push(...snap.series); }
  hourly = snap.hourly;
  byHour = snap.by_hour || [];
  $("#label").textContent = snap.label || "";
  $("#run-id").textContent = [snap.run_id, snap.policy].filter(Boolean).join(" · ");
  if (snap.label) document.title = `${snap.label} — hospital`;
  $("#clock").textContent = clock(snap.time_s);
  const progress = $("#progress");
  if (snap.duration_s) {
    const done = Math.min(1, snap.time_s / snap.duration_s);
    progress.hidden = false;
    progress.value = done;
    $("#of").textContent = ` of ${clock(snap.duration_s)} (${Math.floor(100 * done)} %)`;
  }
  $("#tick").textContent = snap.tick;
  const status = $("#status");
  status.textContent = snap.finished ? "finished" : "live";
  status.className = "status " + (snap.finished ? "finished" : "live");
  drawTiles(snap.tiles);
  drawRooms(snap.floors);
  drawStaff(snap.staff);
  drawQueues(snap.queues);
  drawCharts(snap.finished || !chartsDrawn);
  document.body.dataset.version = snap.version;
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("state", (e) => onState(JSON.parse(e.data)));
  source.onerror = () => { const s = $("#status"); if (!s.classList.contains("finished")) { s.textContent = "disconnected"; s.className = "status disconnected"; } };
}
connect();
