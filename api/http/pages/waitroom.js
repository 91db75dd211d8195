// The waiting room: join, live position and wait, the payment prompt, the outcome.
// Reconnects with the resume token after a network loss; no build step, no libraries.
"use strict";

const eventId = document.body.dataset.eventId;
const $ = (id) => document.getElementById(id);
const show = (id, on = true) => $(id).classList.toggle("hidden", !on);
const tokenKey = `waitroom:${eventId}:token`;
const clientKey = `waitroom:${eventId}:client`;

let wsUrl = null;
let socket = null;
let done = false;
let firstPosition = null;
let retryMs = 1000;
let lastHeard = Date.now();
let countdownTimer = null;
let prompt = null;
let opensAt = null;
let preQueueTimer = null;

function formatWait(s) {
  if (!isFinite(s) || s <= 0) return "any moment";
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s >= 172800) return `${Math.round(s / 86400).toLocaleString()} days`;
  return `${(s / 3600).toFixed(1)} h`;
}

function money(cents) {
  return (cents / 100).toLocaleString(undefined, { style: "currency", currency: "EUR" });
}

function clientId() {
  let id = localStorage.getItem(clientKey);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    id = "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(clientKey, id);
  }
  return id;
}

async function loadEvent() {
  const resp = await fetch(`/v1/events/${encodeURIComponent(eventId)}`);
  if (!resp.ok) {
    $("event-sub").textContent = "This event does not exist.";
    show("join-card", false);
    return;
  }
  const ev = await resp.json();
  showState(ev);
  setInterval(async () => {
    const again = await fetch(`/v1/events/${encodeURIComponent(eventId)}`);
    if (again.ok) showState(await again.json());
  }, 5000);
  wsUrl = ev.waitroom_url;
  document.title = `${ev.name} · waiting room`;
  $("event-name").textContent = ev.name;
  const select = $("quantity");
  for (let q = 1; q <= ev.max_per_order; q++) select.add(new Option(`${q} ticket${q > 1 ? "s" : ""}`, q));
  $("join").disabled = false; // joining needs the WebSocket URL just read
  const token = sessionStorage.getItem(tokenKey);
  if (token) connect({ type: "resume", token });
}

function showState(ev) {
  const opens = new Date(ev.opens_at);
  opensAt = opens.getTime();
  $("event-sub").textContent =
    ev.state === "scheduled" ? `Sale opens ${opens.toLocaleString()}` : `Sale ${ev.state.replace("_", " ")}`;
}

function connect(first) {
  socket = new WebSocket(wsUrl);
  socket.onopen = () => {
    retryMs = 1000;
    lastHeard = Date.now();
    socket.send(JSON.stringify(first));
    $("line-status").textContent = "Connected.";
  };
  socket.onmessage = (e) => {
    lastHeard = Date.now();
    handle(JSON.parse(e.data));
  };
  socket.onclose = () => {
    if (done) return;
    $("line-status").textContent = "Connection lost, reconnecting… your place is kept.";
    const token = sessionStorage.getItem(tokenKey);
    const again = token ? { type: "resume", token } : first;
    setTimeout(() => connect(again), retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
}

// No message (not even a heartbeat, every 30 s by default) for 75 s: the connection is
// dead; start again.
setInterval(() => {
  if (socket && !done && socket.readyState === WebSocket.OPEN && Date.now() - lastHeard > 75000) {
    socket.close();
  }
}, 5000);

function showPosition(position, eta, low, high) {
  clearInterval(preQueueTimer);
  show("join-card", false);
  show("line-card");
  if (firstPosition === null || position > firstPosition) firstPosition = position;
  $("position").textContent = position;
  $("eta").textContent = formatWait(eta);
  const range = [formatWait(low), formatWait(high)];
  $("eta-range").textContent = high > 0 && range[0] !== range[1] ? `between ${range[0]} and ${range[1]}` : "";
  const progress = firstPosition > 0 ? 100 * (1 - (position - 1) / firstPosition) : 100;
  $("progress").style.width = `${Math.max(2, Math.min(100, progress))}%`;
  $("line-status").textContent = position <= 1 ? "You're next." : "You're in line. Keep this page open.";
}

function handle(msg) {
  switch (msg.type) {
    case "queued":
      sessionStorage.setItem(tokenKey, msg.token);
      if (msg.pre_queue) {
        show("join-card", false);
        show("line-card");
        $("position").textContent = "?";
        clearInterval(preQueueTimer);
        const opening = () => {
          $("eta").textContent = opensAt > Date.now() ? `opens in ${formatWait((opensAt - Date.now()) / 1000)}` : "drawing…";
        };
        opening();
        preQueueTimer = setInterval(opening, 1000);
        $("line-status").textContent =
          "You're in the pre-queue. When the sale opens, everyone here gets a random place: arriving early gains nothing, and you lose nothing by waiting.";
      } else {
        showPosition(msg.position, msg.eta_s, msg.eta_low_s || 0, msg.eta_high_s || 0);
      }
      break;
    case "position":
      showPosition(msg.position, msg.eta_s, msg.eta_low_s || 0, msg.eta_high_s || 0);
      show("may-return", Boolean(msg.seats_may_return));
      break;
    case "prompt":
      showPrompt(msg);
      break;
    case "confirmed":
      finish("✓", "You're going!", `Booking ${msg.booking_id} is confirmed.`, "confirmed");
      break;
    case "expired":
      finish("!", "Your hold ran out", "The seats went back to the next people in line.", "expired");
      break;
    case "sold_out":
      finish("×", "Sold out", "Nothing is left for this order. Thank you for waiting.", "sold_out");
      break;
    case "left":
      finish("×", "Your place was given up", "You were away too long when your turn came.", "left");
      break;
    case "error":
      $("line-status").textContent = `Error: ${msg.message}`;
      if (msg.code === "invalid_token") sessionStorage.removeItem(tokenKey);
      break;
    default: // heartbeat, pong, and anything newer: nothing to show
      break;
  }
}

function showPrompt(msg) {
  prompt = msg;
  show("join-card", false);
  show("line-card", false);
  show("prompt-card");
  const seats = $("seats");
  seats.replaceChildren(
    ...msg.seats.map((s) => {
      const li = document.createElement("li");
      li.textContent = s.row ? `${s.section} · row ${s.row} · seat ${s.number}` : `${s.section} · place ${s.number}`;
      return li;
    }),
  );
  $("amount").textContent = money(msg.amount_cents);
  clearInterval(countdownTimer);
  const tick = () => {
    const left = Math.max(0, Math.round((msg.expires_ms - Date.now()) / 1000));
    $("countdown").textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  };
  tick();
  countdownTimer = setInterval(tick, 500);
}

async function payNow() {
  if (!prompt) return;
  $("pay").disabled = true;
  $("pay-status").textContent = "Paying…";
  const resp = await fetch(`/v1/holds/${encodeURIComponent(prompt.hold_id)}/payment`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Authorization: `Bearer ${prompt.hold_token}`,
      "Idempotency-Key": `${prompt.hold_id}:${$("card").value}`,
    },
    body: JSON.stringify({ card_token: $("card").value }),
  });
  if (resp.ok) {
    $("pay-status").textContent = "Payment received, confirming…";
    return;
  }
  const body = await resp.json().catch(() => ({ message: resp.statusText }));
  $("pay-status").textContent = resp.status === 402 ? "Card declined: try another card." : body.message;
  $("pay").disabled = false;
}

function finish(icon, title, text, kind) {
  done = true;
  clearInterval(countdownTimer);
  sessionStorage.removeItem(tokenKey);
  show("join-card", false);
  show("line-card", false);
  show("prompt-card", false);
  show("outcome-card");
  $("outcome-card").dataset.outcome = kind;
  $("outcome-icon").textContent = icon;
  $("outcome-title").textContent = title;
  $("outcome-text").textContent = text;
  if (socket) socket.close();
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  $("join").disabled = true;
  connect({ type: "join", quantity: Number($("quantity").value), client_id: clientId() });
});
$("pay").addEventListener("click", payNow);
loadEvent();
