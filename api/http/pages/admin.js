// Event admin: live counters, pause and resume with the admin key typed in.
"use strict";

const eventId = document.body.dataset.eventId;
const $ = (id) => document.getElementById(id);
let last = null;

async function refresh() {
  const resp = await fetch(`/v1/events/${encodeURIComponent(eventId)}`);
  if (!resp.ok) {
    $("admin-status").textContent = "No such event.";
    return;
  }
  const ev = await resp.json();
  const now = Date.now();
  $("event-name").textContent = ev.name;
  const state = $("state");
  state.textContent = ev.state.replace("_", " ");
  state.className = "pill " + ({ open: "ok", paused: "warn", sold_out: "bad", closed: "bad" }[ev.state] || "");
  $("queue").textContent = ev.queue_length;
  $("holds").textContent = `${ev.active_holds} / ${ev.max_active_holds}`;
  const sold = ev.sections.reduce((n, s) => n + s.sold, 0);
  const capacity = ev.sections.reduce((n, s) => n + s.capacity, 0);
  $("sold").textContent = `${sold} / ${capacity}`;
  if (last && now > last.at) {
    const rate = Math.max(0, ev.admitted - last.admitted) / ((now - last.at) / 1000);
    $("rate").textContent = rate.toFixed(1);
  }
  last = { at: now, admitted: ev.admitted };
}

async function act(action) {
  const resp = await fetch(`/v1/events/${encodeURIComponent(eventId)}/${action}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${$("key").value.trim()}` },
  });
  const body = await resp.json().catch(() => ({}));
  $("admin-status").textContent = resp.ok ? `Admission ${body.state}.` : `${resp.status}: ${body.message || "refused"}`;
  await refresh();
}

$("pause").addEventListener("click", () => act("pause"));
$("resume").addEventListener("click", () => act("resume"));
refresh();
setInterval(refresh, 1000);
