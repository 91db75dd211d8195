// The list of events: state, price range, seats left and the line, each linking its waiting
// room. Reads GET /v1/events (aggregates only) every few seconds.
"use strict";

function eventItem(ev) {
  const li = document.createElement("li");
  li.className = "event";
  const link = document.createElement("a");
  link.href = `/events/${encodeURIComponent(ev.id)}`;
  link.className = "event-link";
  const title = document.createElement("h3");
  title.textContent = ev.name;
  link.append(title);
  const left = ev.free + ev.held;
  const pill = document.createElement("span");
  // Every seat sold: sold out, even before the line's next admission round says so.
  setState(pill, left === 0 && ev.state === "open" ? "sold_out" : ev.state);
  const meta = document.createElement("p");
  meta.className = "muted";
  const opens = ev.state === "scheduled" ? `Opens ${when(ev.opens_at)}` : `Opened ${when(ev.opens_at)}`;
  meta.textContent = `${opens} · ${priceRange(ev.min_price_cents, ev.max_price_cents, ev.currency)}`;
  const seats = document.createElement("p");
  seats.className = "seats-left";
  if (ev.state === "sold_out" || ev.state === "closed" || left === 0) {
    seats.textContent = ev.state === "closed" ? "Sale closed" : "Sold out";
  } else {
    const line = ev.queue_length > 0 ? ` · ${count(ev.queue_length)} in line` : "";
    const baskets = ev.free === 0 ? " (all in baskets: some may come back)" : "";
    seats.textContent = `${count(ev.free)} of ${count(ev.capacity)} seats left${baskets}${line}`;
  }
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("aria-hidden", "true");
  const fill = document.createElement("div");
  fill.style.width = `${ev.capacity ? (100 * ev.sold) / ev.capacity : 0}%`;
  bar.append(fill);
  li.append(link, pill, meta, seats, bar);
  return li;
}

async function refresh() {
  try {
    const { events } = await getJSON("/v1/events");
    $("events").replaceChildren(...events.map(eventItem));
    $("events-status").textContent = events.length ? "" : "No events yet.";
  } catch (err) {
    $("events-status").textContent = `The events could not be loaded (${err.message}); retrying.`;
  }
}

refresh();
setInterval(refresh, 5000);
