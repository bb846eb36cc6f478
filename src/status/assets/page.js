// trickle-edge status page: reads /status/stream (server-sent events over
// fetch, so a bearer token can ride along) and draws the latest snapshot,
// boxes, zones, outputs, fires, charts, health and job. No framework.
"use strict";
const $ = (id) => document.getElementById(id);
const POINTS = 120; // one minute at two states a second
let token = sessionStorage.getItem("trickle-edge-token") || "";
let frame = null, frameSeq = null, last = null, prev = null;
const series = { rate: [], upload: [], dropped: [], latency: [] };

function headers() { return token ? { Authorization: "Bearer " + token } : {}; }
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function ago(ms, now) {
  if (ms == null) return "—";
  const s = Math.max(0, (now - ms) / 1000);
  return s < 60 ? s.toFixed(1) + " s ago" : Math.round(s / 60) + " min ago";
}
function clock(ms) { return new Date(ms).toLocaleTimeString(); }

async function connect() {
  try {
    const r = await fetch("/status/stream", { headers: headers(), cache: "no-store" });
    if (r.status === 401) { $("login").hidden = false; $("conn").textContent = "token required"; return; }
    $("login").hidden = true;
    $("conn").textContent = "live";
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = ev.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (data) update(JSON.parse(data));
      }
    }
  } catch (e) { /* reconnect below */ }
  $("conn").textContent = "reconnecting…";
  setTimeout(connect, 2000);
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("trickle-edge-token", token);
  connect();
});

async function loadFrame(seq) {
  try {
    const r = await fetch("/status/snapshot.jpg?seq=" + seq, { headers: headers(), cache: "no-store" });
    if (!r.ok) return;
    const bitmap = await createImageBitmap(await r.blob());
    frame = bitmap; frameSeq = seq;
    draw();
  } catch (e) { /* the next state retries */ }
}

function update(s) {
  last = s;
  const ok = s.healthy;
  const o = $("overall");
  o.textContent = ok ? "healthy" : "degraded"; o.className = "pill " + (ok ? "ok" : "bad");
  const snap = s.snapshot;
  if (!snap.available) {
    $("snapshot-note").textContent = "No snapshot: this camera's H.264 goes to the muxer untouched (passthrough), so there are no raw frames to take one from. Boxes and zones are drawn on black.";
  } else if (snap.seq == null) {
    $("snapshot-note").textContent = "waiting for the first snapshot…";
  } else {
    $("snapshot-note").textContent = "snapshot #" + snap.seq + ", " + snap.width + "×" + snap.height + ", " + (snap.age_ms / 1000).toFixed(1) + " s old";
  }
  if (snap.seq != null && snap.seq !== frameSeq) loadFrame(snap.seq);
  draw();
  outputs(s);
  fires(s);
  charts(s);
  health(s);
  job(s);
}

// Coordinates: normalised (0..1) when every number is <= 1, else camera pixels.
function scaler(camera, w, h, values) {
  const norm = values.every((v) => Math.abs(v) <= 1.0001);
  if (norm) return (x, y) => [x * w, y * h];
  const cw = (camera && camera.width) || w, ch = (camera && camera.height) || h;
  return (x, y) => [x * w / cw, y * h / ch];
}
function rectOf(b) {
  const r = b.box || b.bbox;
  if (Array.isArray(r) && r.length === 4) return r;
  if ([b.x, b.y, b.w, b.h].every((v) => typeof v === "number")) return [b.x, b.y, b.x + b.w, b.y + b.h];
  return null;
}

function draw() {
  const c = $("view"), g = c.getContext("2d");
  const s = last;
  const cam = s && s.job && s.job.camera;
  if (frame) { if (c.width !== frame.width) c.width = frame.width; if (c.height !== frame.height) c.height = frame.height; }
  else if (cam) { c.width = Math.min(640, cam.width); c.height = Math.round(c.width * cam.height / cam.width); }
  const W = c.width, H = c.height;
  g.fillStyle = "#000"; g.fillRect(0, 0, W, H);
  if (frame) g.drawImage(frame, 0, 0, W, H);
  c.dataset.frameSeq = frameSeq == null ? "" : String(frameSeq);
  if (!s) return;
  let zones = 0;
  const on = s.rules_on || {};
  for (const z of s.zones || []) {
    const pts = z.rect ? [[z.rect[0], z.rect[1]], [z.rect[2], z.rect[1]], [z.rect[2], z.rect[3]], [z.rect[0], z.rect[3]]] : z.polygon;
    const at = scaler(cam, W, H, pts.flat());
    g.beginPath();
    pts.forEach(([x, y], i) => { const [px, py] = at(x, y); i ? g.lineTo(px, py) : g.moveTo(px, py); });
    g.closePath();
    g.fillStyle = on[z.rule] ? "rgba(243,179,61,0.30)" : "rgba(74,163,255,0.12)"; g.fill();
    g.setLineDash([6, 4]); g.strokeStyle = "#4aa3ff"; g.lineWidth = 2; g.stroke(); g.setLineDash([]);
    const [lx, ly] = at(pts[0][0], pts[0][1]);
    g.fillStyle = "#4aa3ff"; g.font = "12px system-ui"; g.fillText(z.rule, lx + 4, ly + 14);
    zones++;
  }
  let boxes = 0;
  const list = $("boxes"); list.replaceChildren();
  const d = s.detections;
  if (d && s.unix_ms - d.unix_ms < 3000) {
    for (const b of d.boxes) {
      const r = rectOf(b); if (!r) continue;
      const at = scaler(cam, W, H, r);
      const [x0, y0] = at(r[0], r[1]), [x1, y1] = at(r[2], r[3]);
      g.strokeStyle = "#3ecf6e"; g.lineWidth = 3; g.strokeRect(x0, y0, x1 - x0, y1 - y0);
      const conf = b.confidence ?? b.score;
      const label = (b.label || "?") + (typeof conf === "number" ? " " + conf.toFixed(2) : "");
      g.font = "bold 14px system-ui";
      const tw = g.measureText(label).width + 8;
      g.fillStyle = "#3ecf6e"; g.fillRect(x0, Math.max(0, y0 - 18), tw, 18);
      g.fillStyle = "#000"; g.fillText(label, x0 + 4, Math.max(13, y0 - 5));
      list.append(el("li", { class: "box" }, label));
      boxes++;
    }
  }
  c.dataset.boxesDrawn = String(boxes);
  c.dataset.zonesDrawn = String(zones);
}

function outputs(s) {
  const body = $("outputs").tBodies[0];
  body.replaceChildren();
  for (const o of s.outputs) {
    const level = o.level == null ? "—" : (o.level ? "ON" : "off");
    const tr = el("tr", { "data-output": o.name, "data-level": o.level == null ? "" : (o.level ? "on" : "off") });
    tr.append(el("td", {}, o.name + " (" + o.kind + ")"));
    tr.append(el("td", { class: o.level ? "level-on" : "level-off" }, level));
    tr.append(el("td", {}, (o.last_action || "—") + " " + (o.last_unix_ms ? ago(o.last_unix_ms, s.unix_ms) : "")));
    tr.append(el("td", { class: o.errors ? "err" : "" }, o.sent + " / " + o.errors + " / " + o.dropped));
    body.append(tr);
  }
}

function fires(s) {
  const rules = $("rules"); rules.replaceChildren();
  for (const [rule, on] of Object.entries(s.rules_on || {})) rules.append(el("span", { class: on ? "on" : "", "data-rule": rule }, rule + (on ? " ON" : "")));
  const ol = $("fires"); ol.replaceChildren();
  for (const f of [...s.fires].reverse()) {
    const li = el("li", { class: "fire", "data-rule": f.rule }, clock(f.unix_ms) + "  " + f.rule + " → " + f.outputs.join(", "));
    ol.append(li);
  }
  if (!s.fires.length) ol.append(el("li", { class: "muted" }, "no fire yet"));
}

function push(name, v) { const a = series[name]; a.push(v); if (a.length > POINTS) a.shift(); }
function charts(s) {
  const c = s.counters;
  if (prev) {
    const dt = Math.max(0.001, (s.unix_ms - prev.t) / 1000);
    const p = prev.c;
    push("rate", (c.segments - p.segments) / dt);
    const du = c.upload_count - p.upload_count;
    push("upload", du > 0 ? (c.upload_sum_s - p.upload_sum_s) / du * 1000 : null);
    push("dropped", c.dropped_gops);
    const dl = c.latency_count - p.latency_count;
    push("latency", dl > 0 ? (c.latency_sum_s - p.latency_sum_s) / dl * 1000 : null);
  }
  prev = { t: s.unix_ms, c };
  for (const [name, data] of Object.entries(series)) {
    const fig = document.querySelector('[data-chart="' + name + '"]');
    const vals = data.filter((v) => v != null);
    const max = Math.max(1e-9, ...vals) * 1.1;
    const pts = data.map((v, i) => v == null ? null : (i * 200 / (POINTS - 1)).toFixed(1) + "," + (50 - v / max * 48).toFixed(1)).filter(Boolean);
    fig.querySelector("polyline").setAttribute("points", pts.join(" "));
    const cur = vals.length ? vals[vals.length - 1] : null;
    fig.querySelector("b").textContent = cur == null ? "—" : (Number.isInteger(cur) ? String(cur) : cur.toFixed(name === "latency" ? 2 : 1));
  }
}

function dl(id, rows) {
  const d = $(id); d.replaceChildren();
  for (const [k, v, cls] of rows) { d.append(el("dt", {}, k)); d.append(el("dd", { class: cls || "" }, v == null ? "—" : String(v))); }
}
function health(s) {
  const h = s.health;
  dl("health", [
    ["status", h.status, h.status === "ok" ? "ok" : "bad"],
    ["media", h.media.state + " (" + h.media.segments_published + " segments, last seq " + h.media.last_segment_seq + ")", h.media.state === "ok" ? "ok" : "bad"],
    ["pipeline", h.pipeline.state + " (silent " + h.pipeline.silent_s.toFixed(1) + " s)", h.pipeline.state === "alive" ? "ok" : "bad"],
    ["data", h.data.items + " items, " + h.data.decode_errors + " decode errors"],
    ["dropped GOPs", h.media.dropped_gops],
    ["job restarts", h.job.restarts],
    ["uptime", h.uptime_s + " s"],
  ]);
}
function job(s) {
  const j = s.job || {};
  const rows = [["mode", j.mode]];
  if (j.peer) rows.push([j.peer_kind, j.peer]);
  for (const [k, v] of Object.entries(j.channels || {})) if (v) rows.push([k, v]);
  if (j.camera) rows.push(["camera", j.camera.source + " " + j.camera.width + "×" + j.camera.height + " @ " + j.camera.fps]);
  dl("job", rows);
}

connect();
