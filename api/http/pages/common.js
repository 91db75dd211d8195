// Shared by every page: element look-ups, money and time in the buyer's locale and time
// zone, event states in words. No build step, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const show = (id, on = true) => $(id).classList.toggle("hidden", !on);

function money(cents, currency) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "EUR" }).format(cents / 100);
}

function priceRange(low, high, currency) {
  return low === high ? money(low, currency) : `${money(low, currency)} – ${money(high, currency)}`;
}

// A date and time in the viewer's own time zone, which is named (e.g. "CET").
const _when = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  timeZoneName: "short",
});
const _clock = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
function when(iso) {
  return _when.format(new Date(iso));
}
function clockTime(ms) {
  return _clock.format(new Date(ms));
}

const STATE_WORDS = { scheduled: "Opens soon", open: "On sale", paused: "Paused", sold_out: "Sold out", closed: "Closed" };
const STATE_CLASS = { scheduled: "", open: "ok", paused: "warn", sold_out: "bad", closed: "bad" };
function setState(el, state) {
  el.textContent = STATE_WORDS[state] || state;
  el.className = `pill ${STATE_CLASS[state] || ""}`;
  el.dataset.state = state;
}

function formatWait(s) {
  if (!isFinite(s) || s <= 0) return "any moment";
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s >= 172800) return `${Math.round(s / 86400).toLocaleString()} days`;
  return `${(s / 3600).toFixed(1)} h`;
}

function count(n) {
  return Number(n).toLocaleString();
}

async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const error = new Error(body.message || resp.statusText);
    error.status = resp.status;
    throw error;
  }
  return body;
}
