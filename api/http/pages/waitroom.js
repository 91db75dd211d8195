// The waiting room: sections and prices, signing in when the sale requires a verified
// identity, choosing a section, joining, the live position and what the wait rests on, the
// payment prompt, the outcome and getting back in line.
// Reconnects with the resume token after a network loss; no build step, no libraries.
"use strict";

const eventId = document.body.dataset.eventId;
const eventUrl = `/v1/events/${encodeURIComponent(eventId)}`;
const tokenKey = `waitroom:${eventId}:token`;
const clientKey = `waitroom:${eventId}:client`;

let ev = null; // the event as last read
let wsUrl = null;
let socket = null;
let done = false;
let inLine = false; // joined (or resuming): the WebSocket, not the event's state, decides
let firstPosition = null;
let retryMs = 1000;
let lastHeard = Date.now();
let countdownTimer = null;
let prompt = null;
let preQueueTimer = null;
let releasing = false; // the buyer gave the held seats back: "expired" is their doing

// Sign-in. An event that requires a verified identity is joined with an identity token
// (the join message's "identity"): either the operator's site hands it to the page, or the
// buyer confirms an email address with a mailed code. The token is kept for this tab only.
const identityKey = `waitroom:${eventId}:identity`;
let identity = sessionStorage.getItem(identityKey); // the token joins carry (null: none)
let identityWho = sessionStorage.getItem(`${identityKey}:who`) || ""; // the confirmed address
let signinAddress = ""; // where the code was sent

function rememberIdentity(token, who) {
  identity = token;
  identityWho = who;
  sessionStorage.setItem(identityKey, token);
  sessionStorage.setItem(`${identityKey}:who`, who);
}

function forgetIdentity() {
  identity = null;
  identityWho = "";
  sessionStorage.removeItem(identityKey);
  sessionStorage.removeItem(`${identityKey}:who`);
}

// The operator's site links buyers here as /events/{id}#identity=<token> (its known-user
// token). A fragment never leaves the browser: not in the request, the server's or a
// proxy's logs, nor a Referer header. Read once, then taken out of the address bar, so a
// shared or bookmarked address does not carry it.
function identityFromAddress() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (!params.has("identity")) return;
  const token = params.get("identity");
  params.delete("identity");
  const rest = params.toString();
  history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
  if (token) rememberIdentity(token, "");
}
identityFromAddress();

// What invites the buyer in: the join form, or first the sign-in the event requires
// (the email code here, or, for the operator's tokens, word to come from its site).
function showJoin(on) {
  const required = Boolean(ev && ev.identity);
  const signin = on && required && !identity;
  show("join-card", on && !signin);
  show("signin-card", signin && ev.identity === "email");
  show("need-identity-card", signin && ev.identity !== "email");
  const perPerson = ev && ev.max_per_person ? ` At most ${count(ev.max_per_person)} tickets per person.` : "";
  const who = identityWho ? `Signed in as ${identityWho}.` : "Signed in through the organiser's site.";
  $("signed-in").textContent = required && identity ? `${who}${perPerson}` : "";
  show("signed-in", required && Boolean(identity));
}

function signinSays(text) {
  $("signin-status").textContent = text;
}

function markInvalid(id, bad) {
  if (bad) $(id).setAttribute("aria-invalid", "true");
  else $(id).removeAttribute("aria-invalid");
}

async function postJSON(url, body) {
  const resp = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  return { resp, body: await resp.json().catch(() => ({})) };
}

// 429: the wait the server asks for is said once; the button comes back after it.
function waitOut(resp, button, what) {
  const wait = Math.max(1, Number(resp.headers.get("Retry-After")) || 1);
  button.disabled = true;
  signinSays(`Too many tries from here. Please wait ${formatWait(wait)} before you ${what} again.`);
  setTimeout(() => {
    button.disabled = false;
    signinSays(`You can ${what} again now.`);
  }, wait * 1000);
}

function showCodeStep(on) {
  show("email-form", !on);
  show("code-form", on);
  markInvalid("signin-code", false);
  if (on) {
    $("signin-code").value = "";
    $("signin-code").focus();
  } else {
    $("signin-email").focus();
  }
}

async function sendCode(e) {
  e.preventDefault();
  const address = $("signin-email").value.trim();
  const plausible = /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(address);
  markInvalid("signin-email", !plausible);
  if (!plausible) {
    signinSays("Enter your email address, like name@example.com.");
    $("signin-email").focus();
    return;
  }
  $("send-code").disabled = true;
  signinSays("Sending the code…");
  let r;
  try {
    r = await postJSON(`${eventUrl}/identity/email`, { email: address });
  } catch (err) {
    $("send-code").disabled = false;
    signinSays("Could not reach the server; try again.");
    return;
  }
  if (r.resp.status === 429) {
    waitOut(r.resp, $("send-code"), "ask for a code");
    return;
  }
  $("send-code").disabled = false;
  if (r.resp.status === 202) {
    signinAddress = address;
    $("code-address").textContent = address;
    showCodeStep(true);
    signinSays(`We emailed a code to ${address}. It works for ${formatWait(r.body.expires_in_s)}.`);
    return;
  }
  const says = {
    400: "That address was not accepted: check it and try again.",
    409: "This sale cannot confirm addresses by email just now. Please contact the organiser.",
    503: "The email could not be sent just now. Try again in a moment.",
  };
  markInvalid("signin-email", r.resp.status === 400);
  signinSays(says[r.resp.status] || r.body.message || "Something went wrong; try again.");
}

async function verifyCode(e) {
  e.preventDefault();
  const code = $("signin-code").value.replace(/\s/g, "");
  if (!/^\d{6}$/.test(code)) {
    markInvalid("signin-code", true);
    signinSays("Enter the 6 digits from the email.");
    $("signin-code").focus();
    return;
  }
  $("verify-code").disabled = true;
  signinSays("Checking the code…");
  let r;
  try {
    r = await postJSON(`${eventUrl}/identity/verify`, { email: signinAddress, code });
  } catch (err) {
    $("verify-code").disabled = false;
    signinSays("Could not reach the server; try again.");
    return;
  }
  if (r.resp.status === 429) {
    waitOut(r.resp, $("verify-code"), "try a code");
    return;
  }
  $("verify-code").disabled = false;
  if (r.resp.ok) {
    rememberIdentity(r.body.token, signinAddress);
    signinSays("");
    if (ev) showState(ev);
    $("join-status").textContent = `Signed in as ${signinAddress}. You can join the line now.`;
    $("join").focus();
    return;
  }
  if (r.body.error === "code_invalid") {
    markInvalid("signin-code", true);
    signinSays("That code is not right. Check the email and type the 6 digits again.");
    $("signin-code").select();
    $("signin-code").focus();
    return;
  }
  if (r.body.error === "code_expired") {
    showCodeStep(false);
    signinSays("That code has expired or has been used up (or had too many wrong tries). Ask for a new one.");
    $("send-code").focus();
    return;
  }
  signinSays(r.body.message || "Something went wrong; try again.");
}

// A join refused for its identity (expired, or not this sale's): sign in again.
function identityRefused(msg) {
  forgetIdentity();
  if (ev) showState(ev);
  if (ev && ev.identity === "email") {
    showCodeStep(false);
    signinSays(`Your sign-in could not be used (${msg.message}). Confirm your address again.`);
  } else {
    $("need-identity-text").textContent =
      `The organiser's sign-in could not be used (${msg.message}). Go back to the organiser's site and follow its link to this page again.`;
  }
}

$("email-form").addEventListener("submit", sendCode);
$("code-form").addEventListener("submit", verifyCode);
$("other-address").addEventListener("click", () => {
  showCodeStep(false);
  signinSays("");
});

function clientId() {
  let id = localStorage.getItem(clientKey);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    id = "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem(clientKey, id);
  }
  return id;
}

function seatsLeft(s) {
  if (s.free > 0) return `${count(s.free)} of ${count(s.capacity)}`;
  if (s.held > 0) return "None free; some may come back";
  return "Sold out";
}

function over(e) {
  return e.state === "sold_out" || e.state === "closed" || e.sections.every((s) => s.free + s.held === 0);
}

function showSections(e) {
  $("sections").replaceChildren(
    ...e.sections.map((s) => {
      const tr = document.createElement("tr");
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = s.id;
      const price = document.createElement("td");
      price.textContent = money(s.price_cents, e.currency);
      const left = document.createElement("td");
      left.textContent = seatsLeft(s);
      if (s.free + s.held === 0) left.className = "gone";
      tr.append(name, price, left);
      return tr;
    }),
  );
}

function buildChoices(e) {
  const box = $("section-choices");
  const choices = [{ id: "", label: "Any section: the best seats left" }].concat(
    e.sections.map((s) => ({ id: s.id, label: `${s.id} · ${money(s.price_cents, e.currency)}`, section: s })),
  );
  box.replaceChildren(
    ...choices.map((c, i) => {
      const label = document.createElement("label");
      label.className = "choice";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "section";
      input.value = c.id;
      input.id = `section-${i}`;
      input.checked = i === 0;
      label.htmlFor = input.id;
      label.append(input, document.createTextNode(` ${c.label}`));
      return label;
    }),
  );
}

function updateChoices(e) {
  for (const input of document.querySelectorAll("input[name=section]")) {
    const s = e.sections.find((x) => x.id === input.value);
    input.disabled = Boolean(s) && s.free + s.held === 0;
    if (input.disabled && input.checked) document.querySelector("input[name=section][value='']").checked = true;
  }
}

function showState(e) {
  ev = e;
  const opens = when(e.opens_at);
  const words = {
    scheduled: `Sale opens ${opens}`,
    open: `On sale since ${opens}`,
    paused: "Sale paused by the organiser: places in line are kept",
    sold_out: "Sold out",
    closed: "Sale closed",
  };
  // Every seat sold: sold out, even before the line's next admission round says so.
  const state = e.state === "open" && over(e) ? "sold_out" : e.state;
  $("event-sub").textContent = words[state] || state;
  showSections(e);
  updateChoices(e);
  if (!inLine && !done) {
    const ended = over(e);
    showJoin(!ended);
    show("closed-card", ended);
    if (ended) {
      $("closed-title").textContent = e.state === "closed" ? "Sale closed" : "Sold out";
      $("closed-text").textContent =
        e.state === "closed" ? "The organiser has ended this sale." : "Every seat has been sold. Thank you for your interest.";
    }
  }
}

async function loadEvent() {
  let e;
  try {
    e = await getJSON(eventUrl);
  } catch (err) {
    $("event-sub").textContent = err.status === 404 ? "This event does not exist." : `The event could not be loaded: ${err.message}`;
    return;
  }
  wsUrl = e.waitroom_url;
  document.title = `${e.name} · waiting room`;
  $("event-name").textContent = e.name;
  buildChoices(e);
  const select = $("quantity");
  for (let q = 1; q <= e.max_per_order; q++) select.add(new Option(`${q} ticket${q > 1 ? "s" : ""}`, q));
  $("join").disabled = false; // joining needs the WebSocket URL just read
  const token = sessionStorage.getItem(tokenKey);
  if (token) {
    inLine = true;
    connect({ type: "resume", token });
  }
  showState(e);
  setInterval(async () => {
    try {
      showState(await getJSON(eventUrl));
    } catch (err) {
      // a blip: the next read tries again
    }
  }, 5000);
}

// Proof of work (ALTCHA v2, SHA-256, deterministic): find the counter whose SHA-256 of
// salt + nonce + counter (big-endian uint32) starts with keyPrefix. Solved in a Web Worker
// with WebCrypto so the page stays responsive; the server checks it with two HMACs.
const POW_WORKER = `onmessage = async (e) => {
  const p = e.data.parameters;
  const bytes = (h) => Uint8Array.from(h.match(/../g) || [], (b) => parseInt(b, 16));
  const salt = bytes(p.salt), nonce = bytes(p.nonce);
  const buf = new Uint8Array(salt.length + nonce.length + 4);
  buf.set(salt);
  buf.set(nonce, salt.length);
  const view = new DataView(buf.buffer);
  for (let n = 0; n < 4294967296; n++) {
    view.setUint32(salt.length + nonce.length, n);
    const key = new Uint8Array(await crypto.subtle.digest("SHA-256", buf)).slice(0, p.keyLength);
    const hex = Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("");
    if (hex.startsWith(p.keyPrefix)) {
      postMessage({ counter: n, derivedKey: hex });
      return;
    }
  }
};`;

function solve(challenge) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(new Blob([POW_WORKER], { type: "text/javascript" }));
    const worker = new Worker(url);
    worker.onmessage = (e) => {
      worker.terminate();
      URL.revokeObjectURL(url);
      resolve(btoa(JSON.stringify({ challenge, solution: e.data })));
    };
    worker.onerror = (e) => reject(e);
    worker.postMessage(challenge);
  });
}

// An event asking for proof of work answers a join without one with a challenge on the
// same connection: solve it and send the join again with the solution. A solution joins
// once, so a reconnect before the place was taken joins plainly and is handed a new one.
function solveAndJoin(s, join, msg) {
  $("join-status").textContent = "Proving this is a person's device…";
  solve(msg.challenge).then(
    (solved) => {
      if (socket === s && s.readyState === WebSocket.OPEN) s.send(JSON.stringify({ ...join, challenge: solved }));
    },
    () => {
      $("join-status").textContent = "This browser could not solve the sale's challenge.";
    },
  );
}

let joinSent = null; // the join message of the current connection (to send again, solved)

function connect(first) {
  joinSent = first.type === "join" ? first : null;
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
    setTimeout(() => connect(token ? { type: "resume", token } : first), retryMs);
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

// Once in line the buyer's own card comes first; the sections move below it.
function engaged(on) {
  document.body.classList.toggle("engaged", on);
}

function enterLine() {
  engaged(true);
  clearInterval(preQueueTimer);
  show("join-card", false);
  show("closed-card", false);
  show("line-card");
}

// What the wait rests on decides what is said: a number only when there is one.
function showWait(msg) {
  const eta = $("eta");
  const range = $("eta-range");
  switch (msg.eta_basis || "measured") {
    case "stalled":
      eta.textContent = msg.eta_high_s > 0 ? `≤ ${formatWait(msg.eta_high_s)}` : "–";
      range.textContent = "Waiting for the buyers ahead to finish checking out.";
      return;
    case "paused":
      eta.textContent = "Paused";
      range.textContent = "The organiser paused the sale. Your place is kept.";
      return;
    case "over":
      eta.textContent = "–";
      range.textContent = msg.sold_out_for_now ? "Sold out for now." : "Nobody else is being let in.";
      return;
    case "not_open":
      return;
    default: {
      eta.textContent = msg.eta_s == null ? "–" : formatWait(msg.eta_s);
      const low = formatWait(msg.eta_low_s || 0);
      const high = formatWait(msg.eta_high_s || 0);
      const between = msg.eta_high_s > 0 && low !== high ? `between ${low} and ${high}` : "";
      const first = msg.eta_basis === "caps" ? "First estimate, from the sale's limits" : "";
      range.textContent = [between, first].filter(Boolean).join(" · ");
    }
  }
}

function showPosition(msg) {
  enterLine();
  const position = msg.position;
  if (firstPosition === null || position > firstPosition) firstPosition = position;
  $("position").textContent = count(position);
  showWait(msg);
  const progress = firstPosition > 0 ? 100 * (1 - (position - 1) / firstPosition) : 100;
  const clamped = Math.round(Math.max(2, Math.min(100, progress)));
  $("progress").style.width = `${clamped}%`;
  $("progress-bar").setAttribute("aria-valuenow", String(clamped));
  const status = position <= 1 ? "You're next." : `You're number ${count(position)} in line. Keep this page open.`;
  if ($("line-status").textContent !== status) $("line-status").textContent = status;
}

function handle(msg) {
  switch (msg.type) {
    case "queued":
      inLine = true;
      $("join-status").textContent = "";
      sessionStorage.setItem(tokenKey, msg.token);
      if (msg.pre_queue) {
        enterLine();
        $("position").textContent = "?";
        $("eta-range").textContent = "";
        const opensAt = ev ? new Date(ev.opens_at).getTime() : 0;
        const opening = () => {
          $("eta").textContent = opensAt > Date.now() ? `opens in ${formatWait((opensAt - Date.now()) / 1000)}` : "drawing…";
        };
        opening();
        preQueueTimer = setInterval(opening, 1000);
        $("line-status").textContent =
          "You're in the pre-queue. When the sale opens, everyone here gets a random place: arriving early gains nothing, and you lose nothing by waiting.";
      } else {
        showPosition(msg);
        show("sold-out-for-now", Boolean(msg.sold_out_for_now));
      }
      break;
    case "position":
      showPosition(msg);
      show("may-return", Boolean(msg.seats_may_return));
      show("sold-out-for-now", Boolean(msg.sold_out_for_now));
      break;
    case "prompt":
      showPrompt(msg);
      break;
    case "confirmed":
      finish("✓", "You're going!", `Booking ${msg.booking_id} is confirmed.`, "confirmed");
      break;
    case "expired":
      if (releasing) {
        finish("–", "You gave your seats back", "They went to the next people in line. You can get back in line while seats are left.", "released");
        break;
      }
      finish("!", "Your hold ran out", "The seats went back to the next people in line. You can get back in line for what is left.", "expired");
      break;
    case "sold_out":
      finish("×", "Sold out", "Nothing is left for this order. Thank you for waiting.", "sold_out");
      break;
    case "left":
      finish("×", "Your place was given up", "You were away too long when your turn came. You can get back in line.", "left");
      break;
    case "challenge":
      if (joinSent) solveAndJoin(socket, joinSent, msg);
      break;
    case "error":
      if (msg.code === "invalid_token") sessionStorage.removeItem(tokenKey);
      if (!sessionStorage.getItem(tokenKey)) {
        // Not in line (a refused join, or a token that no longer works): back to the form.
        inLine = false;
        const s = socket;
        socket = null;
        s.onclose = null;
        s.close();
        show("line-card", false);
        if (ev) showState(ev);
        $("join").disabled = false;
        $("join-status").textContent = `Could not join: ${msg.message}`;
        if (msg.code.startsWith("identity_")) identityRefused(msg);
      } else {
        $("line-status").textContent = `Error: ${msg.message}`;
      }
      break;
    default: // heartbeat, pong, and anything newer: nothing to show
      break;
  }
}

function showPrompt(msg) {
  prompt = msg;
  engaged(true);
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
  $("amount").textContent = money(msg.amount_cents, ev && ev.currency);
  clearInterval(countdownTimer);
  const tick = () => {
    const left = Math.max(0, Math.round((msg.expires_ms - Date.now()) / 1000));
    $("countdown").textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    $("countdown").setAttribute("aria-label", `${Math.floor(left / 60)} minutes ${left % 60} seconds left`);
  };
  tick();
  countdownTimer = setInterval(tick, 500);
  $("pay-status").textContent = `Seats held until ${clockTime(msg.expires_ms)}.`;
  $("pay").focus();
}

// The card, and the address the confirmation mail with the tickets goes to (if given).
function payment() {
  const body = { card_token: $("card").value };
  const email = $("email").value.trim();
  if (email) body.email = email;
  return body;
}

async function payNow() {
  if (!prompt) return;
  $("pay").disabled = true;
  $("pay-status").textContent = "Paying…";
  const headers = {
    "Content-Type": "application/json",
    Authorization: `Bearer ${prompt.hold_token}`,
    "Idempotency-Key": `${prompt.hold_id}:${$("card").value}`,
  };
  // A traced server hands the prompt's trace on: the payment joins the booking's trace.
  if (prompt.traceparent) headers.traceparent = prompt.traceparent;
  const resp = await fetch(`/v1/holds/${encodeURIComponent(prompt.hold_id)}/payment`, {
    method: "POST",
    headers,
    body: JSON.stringify(payment()),
  });
  if (resp.ok) {
    // The booking token outlives the hold: kept here, it opens the tickets page any time.
    const booking = await resp.json();
    localStorage.setItem(`booking:${booking.id}:token`, booking.booking_token);
    $("tickets-link").href = `/bookings/${encodeURIComponent(booking.id)}`;
    if ($("outcome-card").dataset.outcome === "confirmed") show("tickets-link"); // told already
    $("pay-status").textContent = "Payment received, confirming…";
    return;
  }
  const body = await resp.json().catch(() => ({ message: resp.statusText }));
  $("pay-status").textContent = resp.status === 402 ? "Card declined: try another card." : body.message;
  $("pay").disabled = false;
}

// Giving the seats back: DELETE the hold with its token; the line then says "expired".
async function release() {
  if (!prompt) return;
  $("release").disabled = true;
  $("pay").disabled = true;
  releasing = true;
  $("pay-status").textContent = "Giving the seats back…";
  const resp = await fetch(`/v1/holds/${encodeURIComponent(prompt.hold_id)}`, {
    method: "DELETE",
    headers: { Authorization: `Bearer ${prompt.hold_token}` },
  });
  if (resp.ok) return;
  releasing = false;
  const body = await resp.json().catch(() => ({ message: resp.statusText }));
  $("pay-status").textContent = body.message;
  $("release").disabled = false;
  $("pay").disabled = false;
}

function finish(icon, title, text, kind) {
  done = true;
  inLine = false;
  clearInterval(countdownTimer);
  clearInterval(preQueueTimer);
  sessionStorage.removeItem(tokenKey);
  show("join-card", false);
  show("line-card", false);
  show("prompt-card", false);
  show("closed-card", false);
  show("outcome-card");
  engaged(true);
  getJSON(eventUrl).then(showState, () => {}); // seats left after this outcome
  $("outcome-card").dataset.outcome = kind;
  $("outcome-icon").textContent = icon;
  $("outcome-title").textContent = title;
  $("outcome-text").textContent = text;
  // Back in line after a hold ran out or a place was given up, while seats are left.
  show("rejoin", ["expired", "left", "gone", "released"].includes(kind) && !(ev && over(ev)));
  show("tickets-link", kind === "confirmed" && $("tickets-link").getAttribute("href") !== "#");
  $("outcome-title").focus();
  if (socket) socket.close();
}

// Leaving: the page forgets its place and disconnects; the line skips the place when its
// turn comes (after the grace period for a lost connection), holding no seats for it.
function leave() {
  finish("–", "You left the line", "Your place will be skipped. You can get back in line while seats are left.", "gone");
}

// A fresh client id: the line keeps one place per client id, and the old place is decided.
function rejoin() {
  localStorage.removeItem(clientKey);
  done = false;
  inLine = false;
  prompt = null;
  releasing = false;
  firstPosition = null;
  socket = null;
  $("pay").disabled = false;
  $("release").disabled = false;
  $("join").disabled = false;
  show("outcome-card", false);
  show("may-return", false);
  engaged(false);
  if (ev) showState(ev);
  $("join").focus();
}

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  $("join").disabled = true;
  $("join-status").textContent = "Joining…";
  inLine = true;
  const chosen = document.querySelector("input[name=section]:checked");
  const join = { type: "join", quantity: Number($("quantity").value), client_id: clientId() };
  if (chosen && chosen.value) join.section = chosen.value;
  if (ev && ev.identity && identity) join.identity = identity; // the verified person joins
  connect(join);
});
$("pay").addEventListener("click", payNow);
$("release").addEventListener("click", release);
$("leave").addEventListener("click", leave);
$("rejoin").addEventListener("click", rejoin);
loadEvent();
