// jaxmm console: plain JavaScript, no build step, no external resources (works offline).
// Initial state from REST (/api/v1/...), live updates from the WebSocket (/api/v1/mm/ws).
// Token: ?token=... in the page URL (printed by `jaxmm serve`); none in local no-auth mode.
"use strict";

const API = "/api/v1";
const params = new URLSearchParams(location.search);
const TOKEN = params.get("token");

const S = {
  underlyings: [],        // [{symbol, expiries, strikes, tick, spot}]
  u: null,                // selected underlying symbol
  e: null,                // selected expiry (years)
  symbols: {},            // option symbol -> {u, expiry, strike, side}
  cells: {},              // option symbol -> {bid, ask, theo, iv} <td> elements (current view)
  killed: false,
  statuses: [],           // statuses of the current chain rows
  pnl: [],                // [{t (ms), total}]
  fills: [],              // newest first
  alerts: [],             // newest first
  lastSeq: 0,
  ws: null,
  wsRetry: 1000,
  quoteEvents: 0,
};

const $ = (id) => document.getElementById(id);

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (TOKEN) headers["Authorization"] = "Bearer " + TOKEN;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(API + path, {
    method: opts.method || "GET",
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  let data = null;
  try { data = await res.json(); } catch (_) { data = null; }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new Error(`${res.status} ${err.field ? err.field + ": " : ""}${err.message || res.statusText}`);
    e.status = res.status;
    throw e;
  }
  return data;
}

function fmt(x, digits = 2) {
  if (x === null || x === undefined || !isFinite(x)) return "·";
  return Number(x).toFixed(digits);
}

function decimals(tick) {
  const s = String(tick);
  return s.includes(".") ? s.split(".")[1].length : 0;
}

// ------------------------------------------------------------------ status badges

function setWsStatus(state, text) {
  const el = $("ws-status");
  el.dataset.state = state;
  el.textContent = "stream: " + text;
}

function updateEngineStatus() {
  const el = $("engine-status");
  let state = "quoting";
  let text = "QUOTING";
  const st = S.statuses;
  if (S.killed || (st.length && st.every((s) => s === "KILLED"))) {
    state = "killed"; text = "KILLED (quoting halted)";
  } else if (st.some((s) => s === "HALTED")) {
    state = "halted"; text = "HALTED (breaker)";
  } else if (st.length && st.every((s) => s === "STALE" || s === "WAITING")) {
    state = "stale"; text = st[0];
  }
  el.dataset.state = state;
  el.textContent = "status: " + text;
  document.body.dataset.engine = state;
  $("kill").disabled = state === "killed";
  $("resume").disabled = state !== "killed";
}

// ------------------------------------------------------------------ chain table

function selectedUnderlying() {
  return S.underlyings.find((x) => x.symbol === S.u);
}

function renderTabs() {
  const ub = $("underlyings");
  ub.innerHTML = "";
  for (const u of S.underlyings) {
    const b = document.createElement("button");
    b.textContent = u.symbol;
    b.className = u.symbol === S.u ? "active" : "";
    b.onclick = () => { S.u = u.symbol; S.e = u.expiries[0]; renderTabs(); refreshView(); };
    ub.appendChild(b);
  }
  const eb = $("expiries");
  eb.innerHTML = "";
  const u = selectedUnderlying();
  if (!u) return;
  for (const e of u.expiries) {
    const b = document.createElement("button");
    b.textContent = Math.round(e * 365) + "d";
    b.title = e.toFixed(6) + " years";
    b.className = e === S.e ? "active" : "";
    b.onclick = () => { S.e = e; renderTabs(); refreshView(); };
    eb.appendChild(b);
  }
}

function quoteCell(td, price, size, dp) {
  const live = size > 0 && price > 0;
  const text = live ? Number(price).toFixed(dp) : "·";
  if (td.textContent !== text) {
    td.textContent = text;
    td.classList.remove("flash");
    void td.offsetWidth;  // restart the animation
    td.classList.add("flash");
  }
  td.classList.toggle("q-live", live);
  td.title = live ? `size ${size}` : "not quoted";
}

function buildChain(rows) {
  const body = $("chain-body");
  body.innerHTML = "";
  S.cells = {};
  const u = selectedUnderlying();
  const dp = decimals(u ? u.tick : 0.01);
  const bySide = {};
  for (const [sym, m] of Object.entries(S.symbols)) {
    if (m.u === S.u && Math.abs(m.expiry - S.e) <= 1e-9 * Math.max(1, m.expiry)) {
      bySide[m.strike + (m.side === "call" ? "C" : "P")] = sym;
    }
  }
  const spot = u ? u.spot : null;
  let atm = null;
  if (spot) {
    let best = Infinity;
    for (const r of rows) if (Math.abs(r.strike - spot) < best) { best = Math.abs(r.strike - spot); atm = r.strike; }
  }
  S.statuses = [];
  for (const r of rows) {
    const tr = document.createElement("tr");
    if (r.strike === atm) tr.className = "atm";
    const mk = (cls) => { const td = document.createElement("td"); td.className = cls; tr.appendChild(td); return td; };
    const c = { bid: mk("bid"), ask: mk("ask"), theo: mk("theo"), iv: mk("iv") };
    const k = mk("strike");
    k.textContent = r.strike;
    const p = { bid: mk("bid"), ask: mk("ask"), theo: mk("theo"), iv: mk("iv") };
    for (const [side, cells, d] of [["C", c, r.call], ["P", p, r.put]]) {
      quoteCell(cells.bid, d.bid, d.bid_size, dp);
      quoteCell(cells.ask, d.ask, d.ask_size, dp);
      cells.theo.textContent = fmt(d.theo, dp + 1);
      cells.iv.textContent = fmt(100 * d.iv, 1);
      cells.theo.title = `delta ${fmt(d.delta, 3)} gamma ${fmt(d.gamma, 5)} vega ${fmt(d.vega, 3)} theta ${fmt(d.theta, 2)} (raw, per unit)`;
      const sym = bySide[r.strike + side];
      if (sym) S.cells[sym] = cells;
      if (d.status !== undefined) S.statuses.push(String(d.status));
    }
    body.appendChild(tr);
  }
  $("chain-title").textContent = `${S.u} · ${Math.round(S.e * 365)}d (T = ${S.e.toFixed(4)} y)`;
  body.dataset.live = String(body.querySelectorAll("td.q-live").length);
  updateEngineStatus();
}

async function loadSymbols(u) {
  const qs = await api(`/mm/quotes?underlying=${encodeURIComponent(u)}`);
  for (const q of qs) {
    S.symbols[q.symbol] = { u: q.underlying, expiry: q.expiry, strike: q.strike, side: q.is_call ? "call" : "put" };
  }
}

async function loadChain() {
  if (!S.u) return;
  if (!Object.values(S.symbols).some((m) => m.u === S.u)) await loadSymbols(S.u);
  const out = await api(`/mm/chain/${encodeURIComponent(S.u)}?expiry=${S.e}`);
  const rows = out.length ? out[0].rows : [];
  buildChain(rows);
  return rows;
}

function onQuote(ev) {
  S.quoteEvents += 1;
  const cells = S.cells[ev.instrument];
  if (!cells) return;
  const u = selectedUnderlying();
  const dp = decimals(u ? u.tick : 0.01);
  quoteCell(cells.bid, ev.bid, ev.bid_size, dp);
  quoteCell(cells.ask, ev.ask, ev.ask_size, dp);
  if (ev.theo !== null && ev.theo !== undefined) cells.theo.textContent = fmt(ev.theo, dp + 1);
  $("chain-body").dataset.live = String($("chain-body").querySelectorAll("td.q-live").length);
}

// ------------------------------------------------------------------ charts (canvas)

function plot(canvas, series, opts = {}) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  const m = { l: 48, r: 10, t: 10, b: 24 };
  ctx.clearRect(0, 0, W, H);
  let xs = [], ys = [];
  for (const s of series) { xs = xs.concat(s.x); ys = ys.concat(s.y.filter((v) => isFinite(v))); }
  if (!xs.length || !ys.length) {
    ctx.fillStyle = "#8392a5"; ctx.font = "12px sans-serif";
    ctx.fillText(opts.empty || "no data yet", m.l, H / 2);
    return;
  }
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (opts.zero) { y0 = Math.min(y0, 0); y1 = Math.max(y1, 0); }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.05 || 1; y0 -= d; y1 += d; }
  const pad = 0.06 * (y1 - y0); y0 -= pad; y1 += pad;
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (y) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  ctx.strokeStyle = "#2a323c"; ctx.fillStyle = "#8392a5"; ctx.font = "10px sans-serif"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (i / 4) * (y1 - y0);
    ctx.beginPath(); ctx.moveTo(m.l, Y(y)); ctx.lineTo(W - m.r, Y(y)); ctx.stroke();
    ctx.fillText((opts.yfmt || ((v) => v.toFixed(2)))(y), 2, Y(y) + 3);
  }
  for (let i = 0; i <= 4; i++) {
    const x = x0 + (i / 4) * (x1 - x0);
    ctx.fillText((opts.xfmt || ((v) => v.toFixed(0)))(x), X(x) - 12, H - 8);
  }
  if (opts.zero && y0 < 0 && y1 > 0) {
    ctx.strokeStyle = "#4a5562"; ctx.beginPath(); ctx.moveTo(m.l, Y(0)); ctx.lineTo(W - m.r, Y(0)); ctx.stroke();
  }
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.fillStyle = s.color; ctx.lineWidth = 1.6;
    if (s.kind === "points") {
      for (let i = 0; i < s.x.length; i++) {
        if (!isFinite(s.y[i])) continue;
        ctx.beginPath(); ctx.arc(X(s.x[i]), Y(s.y[i]), 3, 0, 2 * Math.PI); ctx.fill();
      }
    } else {
      ctx.beginPath();
      let started = false;
      for (let i = 0; i < s.x.length; i++) {
        if (!isFinite(s.y[i])) { started = false; continue; }
        if (!started) { ctx.moveTo(X(s.x[i]), Y(s.y[i])); started = true; } else ctx.lineTo(X(s.x[i]), Y(s.y[i]));
      }
      ctx.stroke();
    }
  }
}

async function loadSmile(rows) {
  const surf = await api(`/mm/surface/${encodeURIComponent(S.u)}`);
  const series = [];
  if (surf.expiries && surf.expiries.length) {
    let i = 0, best = Infinity;
    surf.expiries.forEach((t, j) => { if (Math.abs(t - S.e) < best) { best = Math.abs(t - S.e); i = j; } });
    series.push({ kind: "line", color: "#5aa9e6", x: surf.strikes, y: surf.vols[i].map((v) => 100 * v) });
    $("smile-title").textContent = `${S.u} · T = ${surf.expiries[i].toFixed(4)} y · forward ${fmt(surf.forward, 2)}`;
  }
  if (rows && rows.length) {
    const x = [], y = [];
    for (const r of rows) {
      for (const d of [r.call, r.put]) if (d.iv > 0) { x.push(r.strike); y.push(100 * d.iv); }
    }
    series.push({ kind: "points", color: "#e0b341", x, y });
  }
  plot($("smile"), series, { yfmt: (v) => v.toFixed(1) + "%", empty: "waiting for the first surface" });
}

// ------------------------------------------------------------------ Greeks vs limits, PnL

async function loadRisk() {
  const [greeks, limits, util] = await Promise.all([api("/mm/greeks"), api("/risk/limits"), api("/risk/utilisation")]);
  const box = $("greek-bars");
  box.innerHTML = "";
  $("greeks-title").textContent = `${S.u} and total`;
  // total limits are in the common currency: dollar delta (delta x S), dollar gamma (per 1 %)
  const td = greeks.total_dollar || {};
  const total = { delta: td.dollar_delta, gamma: td.dollar_gamma, vega: td.vega, theta: td.theta };
  for (const scope of [S.u, "total"]) {
    const g = scope === "total" ? total : (greeks.by_underlying[scope] || {});
    const lim = limits[scope] || {};
    const ut = util[scope] || {};
    const h = document.createElement("div");
    h.className = "muted small";
    h.textContent = scope === "total" ? "total (dollar delta, dollar gamma per 1 %, vega, theta)" : scope;
    box.appendChild(h);
    for (const k of ["delta", "gamma", "vega", "theta"]) {
      const row = document.createElement("div");
      row.className = "bar";
      const frac = ut[k];
      const has = frac !== undefined && lim[k] !== undefined;
      const pct = has ? Math.min(100, 100 * frac) : 0;
      const cls = !has ? "" : frac >= 0.9 ? "bad" : frac >= 0.6 ? "warn" : "";
      row.innerHTML = `<span>${k}</span><span class="track"><span class="fill ${cls}" style="width:${pct}%"></span></span>` +
        `<span class="val">${fmt(g[k], 2)}${has ? " / " + fmt(lim[k], 0) : ""}</span>`;
      row.title = has ? `${(100 * frac).toFixed(1)} % of the limit` : "no limit configured";
      box.appendChild(row);
    }
  }
}

async function loadPnl() {
  const p = await api("/mm/pnl");
  S.pnl.push({ t: Date.now(), total: p.total });
  if (S.pnl.length > 600) S.pnl.shift();
  const t0 = S.pnl[0].t;
  plot($("pnl"), [{ kind: "line", color: "#3fb97a", x: S.pnl.map((q) => (q.t - t0) / 1000), y: S.pnl.map((q) => q.total) }],
    { zero: true, xfmt: (v) => v.toFixed(0) + "s" });
  $("pnl-now").textContent = `total ${fmt(p.total, 2)} · realised ${fmt(p.realised, 2)} · unrealised ${fmt(p.unrealised, 2)} · fees ${fmt(p.fees, 2)}`;
  const a = p.attribution || {};
  $("pnl-attr").textContent = "attribution: " + Object.entries(a).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(" · ");
}

// ------------------------------------------------------------------ fills and alerts

function renderFills() {
  const body = $("fills-body");
  body.innerHTML = "";
  for (const f of S.fills.slice(0, 15)) {
    const tr = document.createElement("tr");
    const t = new Date(Number(f.local_ts_ns) / 1e6).toLocaleTimeString();
    tr.innerHTML = `<td>${t}</td><td>${f.instrument}</td><td class="${f.side}">${f.side}</td>` +
      `<td>${f.quantity}</td><td>${fmt(Number(f.price), 2)}</td>` +
      `<td>${f.theo === null || f.theo === undefined ? "·" : fmt(Number(f.theo), 2)}</td>`;
    body.appendChild(tr);
  }
}

function addAlert(a) {
  S.alerts.unshift(a);
  if (S.alerts.length > 100) S.alerts.pop();
  const ul = $("alerts");
  ul.innerHTML = "";
  for (const x of S.alerts.slice(0, 50)) {
    const li = document.createElement("li");
    li.className = x.severity || "";
    li.textContent = `[${x.severity || "info"}] ${x.kind || ""}: ${x.message || ""}`;
    ul.appendChild(li);
  }
}

async function loadFillsAndAlerts() {
  try {
    const page = await api("/fills?limit=25");
    S.fills = (page.fills || []).slice().reverse();
    renderFills();
  } catch (_) { /* no store: fills arrive from the stream only */ }
  try {
    const alerts = await api("/risk/alerts");
    for (const a of alerts) addAlert(a);
  } catch (_) { /* shown from the stream */ }
}

// ------------------------------------------------------------------ controls, kill switch

const CONTROLS = ["spread_multiplier", "size_scalar", "directional_skew"];

function showControls(c) {
  for (const k of CONTROLS) {
    if (c[k] === undefined) continue;
    $(k).value = c[k];
    $(k + "-out").textContent = Number(c[k]).toFixed(2);
  }
}

function setupControls() {
  for (const k of CONTROLS) {
    const el = $(k);
    el.addEventListener("input", () => { $(k + "-out").textContent = Number(el.value).toFixed(2); });
    el.addEventListener("change", async () => {
      try {
        const c = await api("/mm/controls", { method: "PUT", body: { [k]: Number(el.value) } });
        showControls(c);
        $("ctl-msg").textContent = `${k} set to ${Number(c[k]).toFixed(2)}`;
      } catch (e) {
        $("ctl-msg").textContent = "refused: " + e.message;
        showControls(await api("/mm/controls"));
      }
    });
  }
  $("kill").addEventListener("click", async () => {
    try {
      await api("/mm/kill", { method: "POST", body: { reason: "console kill switch" } });
      S.killed = true;
      updateEngineStatus();
      await refreshView();
    } catch (e) { addAlert({ severity: "critical", kind: "console", message: "kill failed: " + e.message }); }
  });
  $("resume").addEventListener("click", async () => {
    try {
      await api("/mm/resume", { method: "POST" });
      S.killed = false;
      await refreshView();
    } catch (e) { addAlert({ severity: "warning", kind: "console", message: "resume failed: " + e.message }); }
  });
}

// ------------------------------------------------------------------ WebSocket stream

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${proto}//${location.host}${API}/mm/ws` + (TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : "");
  setWsStatus("connecting", "connecting");
  const ws = new WebSocket(url);
  S.ws = ws;
  ws.onopen = () => {
    S.wsRetry = 1000;
    const msg = { op: "subscribe" };
    if (S.lastSeq > 0) msg.from_seq = S.lastSeq + 1;
    ws.send(JSON.stringify(msg));
    setWsStatus("live", "live");
  };
  ws.onmessage = (m) => {
    let f;
    try { f = JSON.parse(m.data); } catch (_) { return; }
    if (f.seq !== undefined && f.event) {
      S.lastSeq = f.seq;
      onEvent(f.event);
    } else if (f.type === "heartbeat") {
      setWsStatus("live", `live · seq ${f.last_seq}`);
    } else if (f.type === "snapshot_required") {
      S.lastSeq = 0;  // missed too much: reload everything, then follow live
      refreshAll();
      ws.close();
    } else if (f.type === "error") {
      addAlert({ severity: "warning", kind: "stream", message: `${f.field}: ${f.message}` });
    }
  };
  ws.onclose = () => {
    setWsStatus("down", "reconnecting");
    setTimeout(connect, S.wsRetry);
    S.wsRetry = Math.min(S.wsRetry * 2, 8000);
  };
}

let riskDirty = true;
function onEvent(ev) {
  switch (ev.type) {
    case "quote_updated": onQuote(ev); break;
    case "order_filled":
      S.fills.unshift(ev);
      if (S.fills.length > 100) S.fills.pop();
      renderFills(); riskDirty = true; break;
    case "greeks_updated": case "hedge_sent": riskDirty = true; break;
    case "price_updated": {
      const u = S.underlyings.find((x) => x.symbol === ev.underlying);
      if (u) u.spot = ev.price;
      if (ev.underlying === S.u) $("spot").textContent = `${S.u} ${fmt(ev.price, 2)}`;
      break;
    }
    case "alert_triggered": addAlert(ev); break;
    case "circuit_breaker":
      addAlert({ severity: ev.to_state === "tripped" ? "critical" : "info", kind: ev.breaker,
                 message: `${ev.from_state} -> ${ev.to_state}: ${ev.reason}` });
      if (ev.breaker === "kill_switch") { S.killed = ev.to_state === "tripped"; updateEngineStatus(); }
      riskDirty = true;
      break;
    case "config_changed":
      addAlert({ severity: "info", kind: "config", message: `version ${ev.version} by ${ev.author}` });
      api("/mm/controls").then(showControls).catch(() => {});
      break;
    default: break;
  }
}

// ------------------------------------------------------------------ refresh loops

async function refreshView() {
  try {
    const rows = await loadChain();
    await loadSmile(rows);
  } catch (e) { $("chain-title").textContent = "error: " + e.message; }
}

async function refreshAll() {
  await refreshView();
  try { await loadRisk(); } catch (e) { $("greek-bars").textContent = "error: " + e.message; }
  try { await loadPnl(); } catch (e) { $("pnl-now").textContent = "error: " + e.message; }
}

async function init() {
  try {
    const h = await api("/health");
    $("auth-mode").textContent = h.auth === "disabled" ? "LOCAL MODE: no auth" : "auth: token";
    const cfg = await api("/mm/config");
    S.underlyings = cfg.config.underlyings.map((u) => ({
      symbol: u.symbol, expiries: u.expiries, strikes: u.strikes, tick: u.tick, spot: u.spot,
    }));
    if (!S.underlyings.length) return;
    S.u = S.underlyings[0].symbol;
    S.e = S.underlyings[0].expiries[0];
    renderTabs();
    showControls(await api("/mm/controls"));
    try { S.killed = Boolean((await api("/risk/breaker")).kill_switch); } catch (_) { /* optional */ }
  } catch (e) {
    $("engine-status").textContent = e.status === 401 || e.status === 403
      ? "not authorised: open the URL printed by `jaxmm serve` (with ?token=)"
      : "error: " + e.message;
    $("engine-status").dataset.state = "down";
    return;
  }
  setupControls();
  await refreshAll();
  await loadFillsAndAlerts();
  connect();
  setInterval(() => { loadPnl().catch(() => {}); }, 1000);
  setInterval(() => { refreshView(); }, 2000);
  setInterval(() => { if (riskDirty) { riskDirty = false; loadRisk().catch(() => {}); } }, 1000);
  setInterval(() => { riskDirty = true; }, 5000);
}

window.jaxmmConsole = S;  // for debugging and the browser test
document.addEventListener("DOMContentLoaded", init);
