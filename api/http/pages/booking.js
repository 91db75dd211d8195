// The buyer's booking: seats, amount, each ticket's QR code (SVG made by the server, inlined)
// and the PDF; cancelling the whole booking or chosen tickets, confirmed first, with the
// refund shown and the cancelled tickets marked. The booking token (from the payment, or
// #token=… in the address) is kept in localStorage, so the buyer can come back to this
// address later; no build step, no libraries.
"use strict";

const bookingId = document.body.dataset.bookingId;
const bookingUrl = `/v1/bookings/${encodeURIComponent(bookingId)}`;
const bookingTokenKey = `booking:${bookingId}:token`;

function bookingToken() {
  const fragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fragment) {
    localStorage.setItem(bookingTokenKey, fragment);
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
  }
  return localStorage.getItem(bookingTokenKey);
}

async function authorised(url) {
  const resp = await fetch(url, { headers: { Authorization: `Bearer ${bookingToken()}` } });
  if (!resp.ok) {
    const body = await resp.json().catch(() => ({ message: resp.statusText }));
    const error = new Error(body.message);
    error.status = resp.status;
    throw error;
  }
  return resp;
}

function seatWords(t) {
  return t.row ? `${t.section} · row ${t.row} · seat ${t.number}` : `${t.section} · place ${t.number}`;
}

function missing(text) {
  $("booking-sub").textContent = "";
  $("missing-text").textContent = text;
  show("missing-card");
}

async function showTicket(li, ticket, n, total) {
  const caption = document.createElement("div");
  caption.className = "ticket-seat";
  caption.textContent = `${n}/${total} · ${seatWords(ticket)}`;
  const code = document.createElement("code");
  code.className = "ticket-code";
  code.textContent = ticket.code;
  if (!ticket.live) {
    // A cancelled ticket lets nobody in: no QR code, said in words.
    li.classList.add("cancelled");
    const gone = document.createElement("div");
    gone.className = "ticket-void";
    gone.textContent = "Cancelled";
    li.append(gone, caption, code);
    return;
  }
  const qr = document.createElement("div");
  qr.className = "qr";
  li.append(qr, caption, code);
  try {
    const svg = await (await authorised(`${bookingUrl}/tickets/${encodeURIComponent(ticket.code)}/qr.svg`)).text();
    // The server's own SVG (made from the code alone): parsed, not evaluated as HTML.
    const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
    const el = document.importNode(doc.documentElement, true);
    el.setAttribute("role", "img");
    el.setAttribute("aria-label", `QR code of ticket ${n}: ${seatWords(ticket)}`);
    qr.replaceChildren(el);
  } catch (err) {
    qr.textContent = `QR code unavailable: ${err.message}`;
  }
}

async function downloadPdf() {
  $("pdf").disabled = true;
  $("pdf-status").textContent = "Preparing the PDF…";
  try {
    const blob = await (await authorised(`${bookingUrl}/tickets.pdf`)).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `tickets-${bookingId}.pdf`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    $("pdf-status").textContent = "The PDF is downloaded.";
  } catch (err) {
    $("pdf-status").textContent = `The PDF could not be made: ${err.message}`;
  }
  $("pdf").disabled = false;
}

let booking = null; // the booking as last read
let eventView = null; // its event (prices, refund policy), or null if it could not be read
let asked = null; // the cancellation being confirmed: {tickets, key}

function priceOf(ticket) {
  const section = eventView && eventView.sections.find((s) => s.id === ticket.section);
  return section ? section.price_cents : null;
}

function sumPrices(tickets) {
  const prices = tickets.map(priceOf);
  return prices.includes(null) ? null : prices.reduce((a, b) => a + b, 0);
}

// May the buyer cancel now? The event's policy: refunds at all, and until when.
function refundPolicy() {
  if (!eventView) return { allowed: false, text: "" };
  if (!eventView.buyer_refunds) return { allowed: false, text: "Tickets of this event cannot be cancelled or refunded here." };
  if (eventView.refund_until && Date.parse(eventView.refund_until) <= Date.now()) {
    return { allowed: false, text: `Tickets could be cancelled until ${when(eventView.refund_until)}.` };
  }
  const until = eventView.refund_until ? ` until ${when(eventView.refund_until)}` : "";
  return { allowed: true, text: `You may cancel any of your tickets${until}; each is refunded in full to the card you paid with.` };
}

function render() {
  const cancelled = booking.status === "cancelled";
  const pill = $("booking-status");
  pill.textContent = cancelled ? "Cancelled" : booking.status === "confirmed" ? "Confirmed" : booking.status;
  pill.className = `pill ${cancelled ? "bad" : "ok"}`;
  $("booking-amount").textContent = money(booking.amount_cents, booking.currency);
  const gone = booking.tickets.filter((t) => !t.live);
  const refunded = sumPrices(gone);
  show("refunded-line", gone.length > 0 && refunded !== null);
  if (refunded !== null) $("refunded-amount").textContent = money(refunded, booking.currency);
  $("booking-seats").replaceChildren(
    ...booking.tickets.map((t) => {
      const li = document.createElement("li");
      li.textContent = t.live ? seatWords(t) : `${seatWords(t)} (cancelled)`;
      li.classList.toggle("cancelled", !t.live);
      return li;
    }),
  );
  show("booking-card");
  show("tickets-card");
  const items = booking.tickets.map(() => document.createElement("li"));
  $("tickets").replaceChildren(...items);
  renderCancel();
  return Promise.all(booking.tickets.map((t, i) => showTicket(items[i], t, i + 1, booking.tickets.length)));
}

function renderCancel() {
  const live = booking.tickets.filter((t) => t.live);
  const policy = refundPolicy();
  show("cancel-card", eventView !== null && live.length > 0);
  $("cancel-policy").textContent = policy.text;
  show("cancel-choose", policy.allowed);
  show("cancel-confirm", false);
  asked = null;
  $("cancel-tickets").replaceChildren(
    ...live.map((t) => {
      const label = document.createElement("label");
      label.className = "choice";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = t.code;
      const price = priceOf(t);
      const words = price === null ? seatWords(t) : `${seatWords(t)} · ${money(price, booking.currency)}`;
      label.append(box, document.createTextNode(words));
      return label;
    }),
  );
  chosenChanged();
}

function chosen() {
  return [...$("cancel-tickets").querySelectorAll("input:checked")].map((box) => box.value);
}

function chosenChanged() {
  $("cancel-chosen").disabled = chosen().length === 0;
}

function newKey() {
  if (crypto.randomUUID) return `page-${crypto.randomUUID()}`;
  return `page-${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

// Ask before cancelling: which seats, and what comes back. ``codes`` null: the whole booking.
function ask(codes) {
  const live = booking.tickets.filter((t) => t.live);
  const tickets = codes === null ? live : live.filter((t) => codes.includes(t.code));
  const refund = sumPrices(tickets);
  const what = codes === null ? "your whole booking" : tickets.length === 1 ? "1 ticket" : `${tickets.length} tickets`;
  const back = refund === null ? "Their price is refunded" : `${money(refund, booking.currency)} is refunded`;
  $("cancel-question").textContent =
    `Cancel ${what} (${tickets.map(seatWords).join("; ")})? ${back} to the card you paid with, ` +
    "and the seats go back on sale. This cannot be undone.";
  asked = { tickets: codes, key: newKey() };
  $("cancel-status").textContent = "";
  show("cancel-choose", false);
  show("cancel-confirm");
  $("cancel-yes").focus();
}

function dismiss() {
  asked = null;
  show("cancel-confirm", false);
  show("cancel-choose");
  $("cancel-all").focus();
}

async function cancelAsked() {
  if (!asked) return;
  $("cancel-yes").disabled = $("cancel-no").disabled = true;
  $("cancel-status").textContent = "Cancelling…";
  try {
    const resp = await fetch(`${bookingUrl}/cancel`, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${bookingToken()}`,
        "Idempotency-Key": asked.key, // asking again after a lost answer refunds once
        "Content-Type": "application/json",
      },
      body: JSON.stringify(asked.tickets === null ? {} : { tickets: asked.tickets }),
    });
    const body = await resp.json().catch(() => ({ message: resp.statusText }));
    if (!resp.ok) throw new Error(body.message || `the server answered ${resp.status}`);
    const amount = money(body.amount_cents, booking.currency);
    const count = body.tickets.length === 1 ? "1 ticket" : `${body.tickets.length} tickets`;
    const done =
      body.status === "pending"
        ? `Cancelled ${count}. Your refund of ${amount} is on its way; it can take a few minutes.`
        : `Cancelled ${count}. Refunded ${amount} to the card you paid with.`;
    booking = await (await authorised(bookingUrl)).json();
    await render();
    $("cancel-status").textContent = "";
    $("refund-note").textContent = done;
    show("refund-note");
  } catch (err) {
    $("cancel-status").textContent = `Nothing was cancelled: ${err.message}`;
  } finally {
    $("cancel-yes").disabled = $("cancel-no").disabled = false;
  }
}

async function load() {
  if (!bookingToken()) {
    missing("This browser has no key to this booking. Open the link of your confirmation mail, or the page you paid on.");
    return;
  }
  try {
    booking = await (await authorised(bookingUrl)).json();
  } catch (err) {
    if (err.status === 401 || err.status === 403) localStorage.removeItem(bookingTokenKey);
    missing(err.status === 404 ? "There is no such booking." : err.message);
    return;
  }
  try {
    eventView = await getJSON(`/v1/events/${encodeURIComponent(booking.event_id)}`);
    $("event-name").textContent = eventView.name;
    document.title = `${eventView.name} · your tickets`;
  } catch {
    eventView = null; // the tickets still show; cancelling waits for the event
  }
  $("booking-sub").textContent = `Booked ${when(booking.created_at)}`;
  $("booking-id").textContent = booking.id;
  await render();
}

$("cancel-tickets").addEventListener("change", chosenChanged);
$("cancel-chosen").addEventListener("click", () => ask(chosen()));
$("cancel-all").addEventListener("click", () => ask(null));
$("cancel-yes").addEventListener("click", cancelAsked);
$("cancel-no").addEventListener("click", dismiss);
$("pdf").addEventListener("click", downloadPdf);
$("print").addEventListener("click", () => window.print());
load();
