// The buyer's booking: seats, amount, each ticket's QR code (SVG made by the server, inlined)
// and the PDF. The booking token (from the payment, or #token=… in the address) is kept in
// localStorage, so the buyer can come back to this address later; no build step, no libraries.
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
  const qr = document.createElement("div");
  qr.className = "qr";
  const caption = document.createElement("div");
  caption.className = "ticket-seat";
  caption.textContent = `${n}/${total} · ${seatWords(ticket)}`;
  const code = document.createElement("code");
  code.className = "ticket-code";
  code.textContent = ticket.code;
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

async function load() {
  if (!bookingToken()) {
    missing("This browser has no key to this booking. Open the link of your confirmation mail, or the page you paid on.");
    return;
  }
  let booking;
  try {
    booking = await (await authorised(bookingUrl)).json();
  } catch (err) {
    if (err.status === 401 || err.status === 403) localStorage.removeItem(bookingTokenKey);
    missing(err.status === 404 ? "There is no such booking." : err.message);
    return;
  }
  getJSON(`/v1/events/${encodeURIComponent(booking.event_id)}`).then(
    (ev) => {
      $("event-name").textContent = ev.name;
      document.title = `${ev.name} · your tickets`;
    },
    () => {},
  );
  $("booking-sub").textContent = `Booked ${when(booking.created_at)}`;
  $("booking-id").textContent = booking.id;
  $("booking-status").textContent = booking.status === "confirmed" ? "Confirmed" : booking.status;
  $("booking-amount").textContent = money(booking.amount_cents, booking.currency);
  $("booking-seats").replaceChildren(
    ...booking.tickets.map((t) => {
      const li = document.createElement("li");
      li.textContent = seatWords(t);
      return li;
    }),
  );
  show("booking-card");
  show("tickets-card");
  const items = booking.tickets.map(() => document.createElement("li"));
  $("tickets").replaceChildren(...items);
  await Promise.all(booking.tickets.map((t, i) => showTicket(items[i], t, i + 1, booking.tickets.length)));
}

$("pdf").addEventListener("click", downloadPdf);
$("print").addEventListener("click", () => window.print());
load();
