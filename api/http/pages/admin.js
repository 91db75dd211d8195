// Event admin: live figures and charts of the sale from the aggregate status (one small read
// a second, whatever the size of the line), seats per section, and the controls: pause,
// resume, close, the admission caps and cancelling the whole event (with its refunds'
// progress), with the admin key typed in and kept in memory; the report built from the event
// log (totals, sales, revenue and check-ins over the sale) once the key is typed.
"use strict";

const eventId = document.body.dataset.eventId;
const eventUrl = `/v1/events/${encodeURIComponent(eventId)}`;
const KEEP = 1800; // samples kept: 30 minutes at one a second

// A ring buffer of samples {t, queue, rate, holds, sold, latency}.
const samples = new Array(KEEP);
let head = 0;
let size = 0;
function record(sample) {
  samples[(head + size) % KEEP] = sample;
  if (size < KEEP) size += 1;
  else head = (head + 1) % KEEP;
}
function series(field) {
  const out = [];
  for (let i = 0; i < size; i++) out.push(samples[(head + i) % KEEP][field]);
  return out;
}

let last = null; // the previous status read, for admissions/s
let latency = null; // payment latency (ms) over the last metrics interval, or null
let lastPayments = null;
let lastState = null;
let capsShown = false;

const CHARTS = [
  { field: "queue", label: "In line", fmt: (v) => count(Math.round(v)) },
  { field: "rate", label: "Admissions per second", fmt: (v) => v.toFixed(1) },
  { field: "holds", label: "Active holds", fmt: (v) => count(Math.round(v)) },
  { field: "sold", label: "Seats sold", fmt: (v) => count(Math.round(v)) },
  { field: "latency", label: "Payment latency, ms", fmt: (v) => v.toFixed(0) },
];

function draw(chart) {
  const svg = $(`chart-${chart.field}`);
  const values = series(chart.field);
  const known = values.filter((v) => v != null);
  if (known.length < 2) return;
  const max = Math.max(1, ...known);
  const w = 300;
  const h = 90;
  const step = w / Math.max(values.length - 1, 1);
  // Gaps (no value: e.g. no payment in an interval) split the line into segments.
  const segments = [];
  let segment = null;
  values.forEach((v, i) => {
    if (v == null) {
      segment = null;
      return;
    }
    if (!segment) segments.push((segment = []));
    segment.push([(i * step).toFixed(1), (h - 4 - ((h - 8) * v) / max).toFixed(1)]);
  });
  let d = "";
  let area = "";
  for (const seg of segments) {
    d += seg.map(([x, y], i) => `${i ? "L" : "M"}${x} ${y}`).join("");
    area += `M${seg[0][0]} ${h}` + seg.map(([x, y]) => `L${x} ${y}`).join("") + `L${seg[seg.length - 1][0]} ${h}Z`;
  }
  svg.innerHTML =
    `<line class="grid" x1="0" y1="4" x2="${w}" y2="4"/><line class="grid" x1="0" y1="${h / 2}" x2="${w}" y2="${h / 2}"/>` +
    `<path class="area" d="${area}"/><path class="line" d="${d}"/>`;
  const now = known[known.length - 1];
  const span = Math.round((samples[(head + size - 1) % KEEP].t - samples[head].t) / 1000);
  svg.setAttribute("aria-label", `${chart.label}: now ${chart.fmt(now)}, peak ${chart.fmt(max)} over the last ${formatWait(span)}`);
  $(`axis-${chart.field}`).textContent = `now ${chart.fmt(now)} · peak ${chart.fmt(max)} · last ${formatWait(span)}`;
}

function log(text) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = clockTime(Date.now());
  li.append(time, document.createTextNode(` ${text}`));
  const list = $("activity");
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

function showSections(ev) {
  $("sections").replaceChildren(
    ...ev.sections.map((s) => {
      const tr = document.createElement("tr");
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = s.id;
      const cells = [money(s.price_cents, ev.currency), count(s.capacity), count(s.free), count(s.held), count(s.sold)].map((t) => {
        const td = document.createElement("td");
        td.textContent = t;
        td.className = "num";
        return td;
      });
      const share = document.createElement("td");
      const bar = document.createElement("div");
      bar.className = "stack";
      bar.setAttribute("aria-hidden", "true");
      for (const [cls, n] of [["sold", s.sold], ["held", s.held]]) {
        const part = document.createElement("div");
        part.className = cls;
        part.style.width = `${s.capacity ? (100 * n) / s.capacity : 0}%`;
        bar.append(part);
      }
      share.append(bar);
      tr.append(name, ...cells, share);
      return tr;
    }),
  );
}

async function readLatency() {
  // The payment histogram of the server answering this page: mean over the last interval.
  try {
    const resp = await fetch("/metrics");
    const text = await resp.text();
    const sum = Number((text.match(/^booking_payment_seconds_sum (\S+)$/m) || [])[1]);
    const n = Number((text.match(/^booking_payment_seconds_count (\S+)$/m) || [])[1]);
    if (lastPayments && n > lastPayments.n) latency = (1000 * (sum - lastPayments.sum)) / (n - lastPayments.n);
    else latency = null;
    lastPayments = { sum, n };
  } catch (err) {
    latency = null;
  }
}

// The door: tickets checked in of the live ones (read less often: it is a PostgreSQL count).
async function readCheckins() {
  const key = $("key").value.trim();
  if (!key) return;
  try {
    const resp = await fetch(`${eventUrl}/checkins`, { headers: { Authorization: `Bearer ${key}` } });
    if (!resp.ok) throw new Error(resp.statusText);
    const c = await resp.json();
    $("checked-in").textContent = `${count(c.checked_in)} / ${count(c.live_tickets)}`;
  } catch (err) {
    $("checked-in").textContent = "–";
  }
}

async function refresh() {
  let ev;
  try {
    ev = await getJSON(eventUrl);
  } catch (err) {
    $("updated").textContent = err.status === 404 ? "no such event" : `not updated: ${err.message}`;
    return;
  }
  const now = Date.now();
  document.title = `${ev.name} · admin`;
  lastCurrency = ev.currency;
  $("event-name").textContent = ev.name;
  setState($("state"), ev.state);
  $("ws-url").textContent = ev.waitroom_url;
  if (lastState !== null && lastState !== ev.state) log(`State: ${(STATE_WORDS[ev.state] || ev.state).toLowerCase()}.`);
  lastState = ev.state;
  if (!capsShown) {
    $("max-active").value = ev.max_active_holds;
    $("per-minute").value = ev.admissions_per_minute;
    capsShown = true;
  }
  const sold = ev.sections.reduce((n, s) => n + s.sold, 0);
  const capacity = ev.sections.reduce((n, s) => n + s.capacity, 0);
  let rate = null;
  if (last && now > last.at) rate = Math.max(0, ev.admitted - last.admitted) / ((now - last.at) / 1000);
  last = { at: now, admitted: ev.admitted };
  $("queue").textContent = count(ev.queue_length);
  $("rate").textContent = rate == null ? "–" : rate.toFixed(1);
  $("holds").textContent = `${count(ev.active_holds)} / ${count(ev.max_active_holds)}`;
  $("sold").textContent = `${count(sold)} / ${count(capacity)}`;
  $("latency").textContent = latency == null ? "–" : `${latency.toFixed(0)} ms`;
  $("updated").textContent = `updated ${clockTime(now)}`;
  showSections(ev);
  record({ t: now, queue: ev.queue_length, rate, holds: ev.active_holds, sold, latency });
  CHARTS.forEach(draw);
}

async function act(path, method, body, done) {
  const key = $("key").value.trim();
  if (!key) {
    $("admin-status").textContent = "Type the admin key first.";
    $("key").focus();
    return;
  }
  const headers = { Authorization: `Bearer ${key}` };
  if (body) headers["Content-Type"] = "application/json";
  const resp = await fetch(`${eventUrl}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const answer = await resp.json().catch(() => ({}));
  const text = resp.ok ? done(answer) : `${resp.status}: ${answer.message || "refused"}`;
  $("admin-status").textContent = text;
  log(text);
  await refresh();
}

const STATE_SENTENCE = {
  open: "Admission is running.",
  scheduled: "Admission starts at the opening time.",
  paused: "Admission is paused; the line keeps its order.",
  closed: "The sale is closed.",
  sold_out: "Sold out.",
};
const stateChange = (action) => () => act(`/${action}`, "POST", null, (a) => STATE_SENTENCE[a.state] || a.state);
$("pause").addEventListener("click", stateChange("pause"));
$("resume").addEventListener("click", stateChange("resume"));
$("close").addEventListener("click", () => {
  if (window.confirm("Close the sale? Nobody else will be let in, and it cannot be reopened.")) stateChange("close")();
});
// The join challenge's difficulty: raised during a join flood, each join then costs a
// device that many SHA-256 hashes (three quarters of it on average).
async function showDifficulty() {
  try {
    $("difficulty").value = (await (await fetch(`${eventUrl}/challenge`)).json()).difficulty;
  } catch (err) {
    // shown on the next load
  }
}
$("challenge-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = { difficulty: Number($("difficulty").value) };
  act("/challenge", "PUT", body, (a) => (a.difficulty ? `Joins now solve a challenge of ${count(a.difficulty)} hashes.` : "Joins need no challenge."));
});
showDifficulty();
$("caps-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = {
    max_active_holds: Number($("max-active").value),
    admissions_per_minute: Number($("per-minute").value),
  };
  act("/admission", "PATCH", body, (a) => `Caps applied: ${count(a.max_active_holds)} holds at once, ${a.admissions_per_minute ? count(a.admissions_per_minute) + " admissions a minute" : "no rate cap"}.`);
});

// Cancelling the whole event: the workers refund every booking; its progress is shown
// (read with the admin key, once typed) until it is done.
function cancelProgress(c) {
  const money_ = money(c.refunded_cents, lastCurrency);
  const more = [c.pending ? `${count(c.pending)} refund(s) being retried` : "", c.refused ? `${count(c.refused)} refused` : ""].filter(Boolean).join(", ");
  const head = c.status === "done" ? "Event cancelled" : "Cancelling the event";
  return `${head}: ${count(c.refunded)} of ${count(c.bookings)} bookings refunded (${money_})${more ? `; ${more}` : ""}.`;
}
let lastCurrency = "EUR";
async function readCancellation() {
  const key = $("key").value.trim();
  if (!key) return;
  const resp = await fetch(`${eventUrl}/cancellation`, { headers: { Authorization: `Bearer ${key}` } });
  if (!resp.ok) return;
  const progress = $("cancel-progress");
  progress.textContent = cancelProgress(await resp.json());
  progress.hidden = false;
}
$("cancel-event").addEventListener("click", () => {
  if (window.confirm("Cancel the whole event? The sale closes and every booking is refunded; this cannot be undone.")) {
    act("/cancel", "POST", null, cancelProgress).then(readCancellation);
  }
});
// Door staff keys: made (the key shown once, never logged), listed, revoked.
async function listKeys() {
  const key = $("key").value.trim();
  if (!key) return;
  const resp = await fetch(`${eventUrl}/staff-keys`, { headers: { Authorization: `Bearer ${key}` } });
  if (!resp.ok) return;
  const list = $("staff-keys");
  list.replaceChildren();
  for (const k of (await resp.json()).keys) {
    const li = document.createElement("li");
    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "danger";
    revoke.textContent = "Revoke";
    revoke.setAttribute("aria-label", `Revoke the key of ${k.label}`);
    revoke.addEventListener("click", () =>
      act(`/staff-keys/${encodeURIComponent(k.id)}`, "DELETE", null, (a) => {
        if ($("new-key-label").textContent === a.label) show("new-key-box", false);
        listKeys();
        return `Staff key of ${a.label} revoked.`;
      }),
    );
    li.append(document.createTextNode(`${k.label} · made ${clockTime(Date.parse(k.created_at))} `), revoke);
    list.append(li);
  }
}
$("staff-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const label = $("staff-label").value.trim();
  if (!label) {
    $("admin-status").textContent = "Say who or which door the key is for.";
    $("staff-label").focus();
    return;
  }
  act("/staff-keys", "POST", { label }, (a) => {
    $("new-key-label").textContent = a.label;
    $("new-key").textContent = a.key;
    show("new-key-box");
    $("staff-label").value = "";
    listKeys();
    return `Staff key made for ${a.label}.`;
  });
});
$("list-keys").addEventListener("click", listKeys);

// The report: the read models the workers build from the event log, drawn as inline SVG
// (bars per minute; revenue as a running total), read with the admin key once typed.
const REPORT_CHARTS = [
  { id: "report-sales", label: "Tickets sold per minute", value: (m) => m.tickets_sold, fmt: (v) => count(v) },
  { id: "report-revenue", label: "Net revenue", value: (m) => m.revenue_cents - m.refunded_cents, running: true, fmt: (v) => money(v, reportCurrency) },
  { id: "report-checkins", label: "Check-ins per minute", value: (m) => m.checked_in, fmt: (v) => count(v) },
];
let reportCurrency = "EUR";

function drawReport(chart, minutes) {
  const svg = $(chart.id);
  if (!minutes.length) return;
  const w = 300;
  const h = 90;
  let total = 0;
  const values = minutes.map((m) => (chart.running ? (total += chart.value(m)) : chart.value(m)));
  const max = Math.max(1, ...values);
  const y = (v) => (h - 4 - ((h - 8) * Math.max(0, v)) / max).toFixed(1);
  let body;
  if (chart.running) {
    const line = values.length === 1 ? [values[0], values[0]] : values; // one minute: flat
    const step = w / (line.length - 1);
    const points = line.map((v, i) => [(i * step).toFixed(1), y(v)]);
    const d = points.map(([px, py], i) => `${i ? "L" : "M"}${px} ${py}`).join("");
    body = `<path class="area" d="M0 ${h}${points.map(([px, py]) => `L${px} ${py}`).join("")}L${points[points.length - 1][0]} ${h}Z"/><path class="line" d="${d}"/>`;
  } else {
    const bw = w / values.length;
    body = values.map((v, i) => `<rect class="area" x="${(i * bw).toFixed(1)}" y="${y(v)}" width="${Math.max(bw - 1, 0.5).toFixed(1)}" height="${(h - y(v)).toFixed(1)}"/>`).join("");
  }
  svg.innerHTML = `<line class="grid" x1="0" y1="4" x2="${w}" y2="4"/><line class="grid" x1="0" y1="${h / 2}" x2="${w}" y2="${h / 2}"/>${body}`;
  const first = clockTime(Date.parse(minutes[0].minute));
  const lastMinute = clockTime(Date.parse(minutes[minutes.length - 1].minute));
  const text = chart.running
    ? `${chart.fmt(values[values.length - 1])} from ${first} to ${lastMinute}`
    : `peak ${chart.fmt(max)} a minute · ${first} to ${lastMinute}`;
  svg.setAttribute("aria-label", `${chart.label}: ${text}`);
  $(`axis-${chart.id}`).textContent = text;
}

async function readReport() {
  const key = $("key").value.trim();
  if (!key) return;
  const resp = await fetch(`${eventUrl}/report`, { headers: { Authorization: `Bearer ${key}` } });
  if (!resp.ok) return;
  const r = await resp.json();
  reportCurrency = r.currency || reportCurrency;
  const t = r.totals;
  $("r-sold").textContent = count(t.tickets_sold);
  $("r-revenue").textContent = money(t.revenue_cents, reportCurrency);
  $("r-refunded").textContent = money(t.refunded_cents, reportCurrency);
  $("r-net").textContent = money(t.net_revenue_cents, reportCurrency);
  $("r-cancellations").textContent = `${count(t.cancellations)} (${count(t.tickets_cancelled)} tickets)`;
  $("r-checked-in").textContent = count(t.checked_in);
  const behind = r.log_seq - r.as_of_seq;
  $("report-note").textContent = `Built from the event log by the workers: ${count(r.as_of_seq)} entries counted${behind ? `, ${count(behind)} still to count` : ""}.`;
  for (const chart of REPORT_CHARTS) drawReport(chart, r.minutes);
}

// Every event, newest first, each linking its own admin page (this one marked).
async function listEvents() {
  try {
    const { events } = await getJSON("/v1/events");
    $("admin-events").replaceChildren(
      ...events.map((ev) => {
        const li = document.createElement("li");
        const link = document.createElement("a");
        link.href = `/events/${encodeURIComponent(ev.id)}/admin`;
        link.textContent = ev.name;
        if (ev.id === eventId) link.setAttribute("aria-current", "page");
        const state = (STATE_WORDS[ev.state] || ev.state).toLowerCase();
        li.append(link, document.createTextNode(` · ${state} · ${count(ev.sold)} of ${count(ev.capacity)} sold`));
        return li;
      }),
    );
  } catch (err) {
    // listed again on the next round
  }
}

refresh();
readLatency();
listEvents();
setInterval(listEvents, 15000);
setInterval(refresh, 1000);
setInterval(readLatency, 2000);
setInterval(readCancellation, 2000);
setInterval(readReport, 5000);
$("key").addEventListener("change", readReport);
readCheckins();
setInterval(readCheckins, 5000);
$("key").addEventListener("change", readCheckins); // the counts need the key

