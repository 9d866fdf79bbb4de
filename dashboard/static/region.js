// The region's live page: one EventSource on /events; each "state" event is the region's
// snapshot (its KPIs, a tile a hospital, the transfers on the road) and the time-series
// points since the last.
"use strict";
const series = [];          // every time-series point received
let ids = [];
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
const mins = (s) => (s / 60).toFixed(1) + " min";
function span(seconds) {
  const s = Math.max(0, Math.floor(seconds)), pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)}:${pad(s % 60)}`;
  return `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}
function setTile(name, text) { const el = document.querySelector(`[data-tile="${name}"]`); if (el) el.textContent = text; }
// a hospital's load class by its rooms not free now
const load = (x) => (x >= 0.9 ? "load-high" : x >= 0.7 ? "load-mid" : "load-low");

function drawTiles(r) {
  setTile("arrivals", r.arrivals);
  setTile("referred_out", r.referred_out);
  setTile("referred_out_rate", pct(r.referred_out_rate));
  setTile("requested", r.requested);
  setTile("offers", `${r.offers} (${r.declined})`);
  setTile("transfers", r.transfers);
  setTile("travel", `${mins(r.mean_transfer_travel_s)} / ${mins(r.p95_transfer_travel_s)}`);
  setTile("wait", span(r.mean_wait_for_acceptance_s));
  setTile("occupancy", `${pct(r.occupancy_mean)} ± ${pct(r.occupancy_spread)}`);
  setTile("requests_pending", r.in_flight.requests_pending);
}

function drawHospitals(hospitals) {
  $("#hospitals").innerHTML = hospitals.map((h) =>
    `<div class="hospital ${load(h.taken_now)}" data-hospital="${esc(h.id)}" data-load="${load(h.taken_now)}">` +
    `<h3>${esc(h.id)} <small>${h.rooms} rooms</small></h3>` +
    `<div class="bar" title="${pct(h.taken_now)} of the rooms not free now"><i style="width:${(100 * h.taken_now).toFixed(1)}%"></i></div>` +
    `<dl><dt title="booked, occupied, dirty, being cleaned or held for a transfer">rooms not free now</dt><dd data-figure="taken_now">${pct(h.taken_now)}</dd>` +
    `<dt>patients in rooms now</dt><dd data-figure="in_rooms">${h.in_rooms}</dd>` +
    `<dt title="patients in its rooms waiting for a porter, nurse or doctor">waiting for staff</dt><dd data-figure="waiting_for_staff">${h.waiting_for_staff}</dd>` +
    `<dt title="its patients it could not take, waiting for another hospital">waiting for a transfer</dt><dd data-figure="waiting_for_transfer">${h.waiting_for_transfer}</dd>` +
    `<dt>arrivals</dt><dd data-figure="arrivals">${h.arrivals}</dd>` +
    `<dt>transfers in / out</dt><dd data-figure="transfers">${h.transfers_in} / ${h.transfers_out}</dd>` +
    `<dt>referred out</dt><dd data-figure="referred_out">${h.referred_out}</dd>` +
    `<dt>occupancy (run)</dt><dd data-figure="room_occupancy">${pct(h.room_occupancy)}</dd></dl></div>`).join("");
}

function drawRoad(road, count) {
  $("#road-count").textContent = count;
  $("#road tbody").innerHTML = road.map((t) =>
    `<tr data-patient="${esc(t.patient)}"><td>${esc(t.patient)}</td><td>${esc(t.from)} → ${esc(t.to)}</td>` +
    `<td>${clock(t.left_s)}</td><td>${clock(t.eta_s)}</td><td>${span(t.in_s)}</td></tr>`).join("") +
    (count > road.length ? `<tr><td colspan="5">… ${count - road.length} more</td></tr>` : "");
}

const LAYOUT = { margin: { l: 45, r: 10, t: 50, b: 40 }, legend: { orientation: "h", x: 0, y: 1.12 }, font: { size: 11 } };
function drawCharts(force) {
  const now = Date.now();
  if (!window.Plotly || (!force && now - lastChart < 1000)) return;
  lastChart = now;
  const hours = series.map((p) => p.t / 3600);
  Plotly.react("chart-occupancy", ids.map((id, n) => ({ x: hours, y: series.map((p) => p.occupancy[n]), name: id, mode: "lines", line: { shape: "hv" } })),
    { ...LAYOUT, title: { text: "Rooms occupied, share", y: 0.97 }, xaxis: { title: { text: "hour" } }, yaxis: { tickformat: ".0%", range: [0, 1.05] } }, { displayModeBar: false });
  Plotly.react("chart-waiting", [
    { x: hours, y: series.map((p) => p.pending), name: "waiting for an offer", mode: "lines", line: { shape: "hv", color: "#c62828" } },
    { x: hours, y: series.map((p) => p.on_the_road), name: "on the road", mode: "lines", line: { shape: "hv", color: "#0288d1" } },
  ], { ...LAYOUT, title: { text: "Transfers waiting and on the road", y: 0.97 }, xaxis: { title: { text: "hour" } }, yaxis: { rangemode: "tozero" } }, { displayModeBar: false });
  chartsDrawn = true;
  document.body.dataset.charts = String(series.length);
}

function onState(snap) {
  if (snap.series_from === 0) series.length = 0;
  if (snap.series_from <= series.length) { series.length = snap.series_from; series.push(...snap.series); }
  ids = snap.ids;
  $("#label").textContent = snap.label || "";
  $("#coordinator").textContent = `coordinator ${snap.coordinator}`;
  if (snap.label) document.title = `${snap.label} — hospital region`;
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
  drawTiles(snap.region);
  drawHospitals(snap.hospitals);
  drawRoad(snap.on_the_road, snap.on_the_road_count);
  drawCharts(snap.finished || !chartsDrawn);
  document.body.dataset.version = snap.version;
}

function connect() {
  const source = new EventSource("/events");
  source.addEventListener("state", (e) => onState(JSON.parse(e.data)));
  source.onerror = () => { const s = $("#status"); if (!s.classList.contains("finished")) { s.textContent = "disconnected"; s.className = "status disconnected"; } };
}
connect();
