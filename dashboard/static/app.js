// The live dashboard: one EventSource on /events; each "state" event is the projection's
// snapshot (rooms, staff, waiting lists, tiles) and the time-series points since the last.
"use strict";
const ROLES = ["porter", "medical", "cleaner"];
const series = [];          // every time-series point received
let hourly = [];
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
}

function drawRooms(floors) {
  const total = floors.reduce((n, f) => n + f.rooms.length, 0);
  const box = $("#rooms");
  box.classList.toggle("many", total > 60);
  box.innerHTML = floors.slice().reverse().map((f) =>
    `<div class="floor" data-floor="${esc(f.floor)}"><b>${esc(f.floor)}</b><div class="cells">` +
    f.rooms.map((r) => `<div class="room ${esc(r.state)}" data-room="${esc(r.id)}" data-state="${esc(r.state)}" ` +
      `title="${esc(r.id)} ${esc(r.state)} ${esc(r.patient || "")}${r.held_for ? " kept for " + esc(r.held_for) : ""}">${esc(r.id)}<span class="p">${esc(short(r.patient))}</span></div>`).join("") +
    `</div></div>`).join("");
}

function drawStaff(staff) {
  $("#staff tbody").innerHTML = staff.map((s) => {
    const doing = s.task ? `${esc(s.task.kind)} ${esc(s.task.patient)} ${esc(s.task.room)} <span class="age">(${s.task.for_s.toFixed(0)} s)</span>` : (s.off_duty ? "off duty" : (s.held_until_s != null ? `held until ${s.held_until_s.toFixed(0)} s` : "idle"));
    return `<tr data-staff="${esc(s.id)}"><td>${esc(s.id)}</td><td>${esc(s.role)}</td>` +
      `<td class="${s.task ? "busy" : "idle"}">${doing}</td><td>${esc(s.place)}</td></tr>`;
  }).join("");
}

function drawQueues(queues) {
  $("#queues").innerHTML = ROLES.map((role) => {
    const q = queues[role];
    const items = q.tasks.map((t) => `<li>${esc(t.kind)} ${esc(t.patient)} ${esc(t.room)} <span class="age">${t.age_s.toFixed(0)} s</span></li>`).join("");
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
  chartsDrawn = true;
  document.body.dataset.charts = String(series.length);
}

function onState(snap) {
  if (snap.series_from === 0) series.length = 0;
  if (snap.series_from <= series.length) { series.length = snap.series_from; series.push(...snap.series); }
  hourly = snap.hourly;
  $("#run").textContent = [snap.run_id, snap.policy].filter(Boolean).join(" · ");
  $("#clock").textContent = clock(snap.time_s);
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
