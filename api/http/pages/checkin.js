// The door staff's page: a staff key (typed once, kept on this device for this event),
// then tickets scanned with the camera where the browser has BarcodeDetector, or typed.
// Each scan ends in a big green (the seat) or red (in already, cancelled, unknown) answer.
"use strict";

const eventId = document.body.dataset.eventId;
const storeKey = `checkin:${eventId}`;
let door = JSON.parse(localStorage.getItem(storeKey) || "null"); // {key, gate}
let busy = false;
let lastScan = { code: "", at: 0 };

const _hhmm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function verdict(kind, title, detail) {
  const card = $("result");
  card.dataset.result = kind;
  $("result-title").textContent = title;
  $("result-detail").textContent = detail || "";
  show("result");
}

function seat(t) {
  return t.row ? `${t.section} · row ${t.row} · seat ${t.number}` : `${t.section} · place ${t.number}`;
}

function ready() {
  const on = Boolean(door);
  show("key-card", !on);
  show("scan-card", on);
  if (on) {
    $("gate-name").textContent = door.gate;
    $("code").focus();
    startCamera();
  }
}

async function check(code) {
  if (busy || !door) return;
  busy = true;
  $("check").disabled = true;
  try {
    const resp = await fetch("/v1/checkin", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${door.key}` },
      body: JSON.stringify({ code, gate: door.gate }),
    });
    const body = await resp.json().catch(() => ({}));
    if (resp.ok) {
      verdict("in", "Welcome in", seat(body));
    } else if (resp.status === 409) {
      const at = _hhmm.format(new Date(body.checked_in_at));
      verdict("already", "Already in", `Came in at ${at} at gate ${body.gate} (${seat(body)}).`);
    } else if (resp.status === 410 && body.error === "cancellation_pending") {
      verdict("cancelled", "Ticket being cancelled", "Its holder is cancelling it for a refund: it lets nobody in.");
    } else if (resp.status === 410) {
      verdict("cancelled", "Cancelled ticket", "This ticket was cancelled: it lets nobody in.");
    } else if (resp.status === 404) {
      verdict("unknown", "Unknown ticket", "No ticket of this event has this code.");
    } else if (resp.status === 401) {
      forget();
      $("key-status").textContent = "That key is not a staff key of this event (or it was revoked).";
      verdict("error", "Key refused", "Type a staff key of this event.");
    } else if (resp.status === 422) {
      verdict("unknown", "Not a ticket code", body.message || "Check the code and try again.");
    } else {
      verdict("error", "Try again", body.message || `The server answered ${resp.status}.`);
    }
  } catch (err) {
    verdict("error", "No connection", "The scan did not reach the server: try again.");
  } finally {
    busy = false;
    $("check").disabled = false;
    refreshCounts();
  }
}

function forget() {
  localStorage.removeItem(storeKey);
  door = null;
  ready();
}

let cameraOn = false;
async function startCamera() {
  if (cameraOn || !("BarcodeDetector" in window) || !navigator.mediaDevices) return;
  cameraOn = true;
  try {
    const detector = new BarcodeDetector({ formats: ["qr_code", "code_128", "aztec", "data_matrix"] });
    const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    const video = $("camera");
    video.srcObject = stream;
    await video.play();
    show("camera-box");
    const tick = async () => {
      if (door && !busy && video.readyState >= 2) {
        const found = await detector.detect(video).catch(() => []);
        const code = found.length ? found[0].rawValue.trim() : "";
        const now = Date.now();
        if (code && (code !== lastScan.code || now - lastScan.at > 4000)) {
          lastScan = { code, at: now };
          $("code").value = code;
          await check(code);
        }
      }
      setTimeout(tick, 250);
    };
    tick();
  } catch (err) {
    cameraOn = false; // no camera or no permission: typed codes only
    show("camera-box", false);
  }
}

async function refreshCounts() {
  try {
    const counts = await getJSON(`/v1/events/${encodeURIComponent(eventId)}/checkins`);
    $("counts").textContent = `${count(counts.checked_in)} of ${count(counts.live_tickets)} tickets in`;
  } catch (err) {
    $("counts").textContent = "counts unavailable";
  }
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("staff-key").value.trim();
  const gate = $("gate").value.trim();
  if (!key || !gate) return;
  door = { key, gate };
  localStorage.setItem(storeKey, JSON.stringify(door));
  $("staff-key").value = "";
  $("key-status").textContent = "";
  ready();
});

$("code-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = $("code").value.trim();
  if (code) check(code).then(() => $("code").select());
});

$("forget").addEventListener("click", forget);

(async () => {
  try {
    const ev = await getJSON(`/v1/events/${encodeURIComponent(eventId)}`);
    $("event-name").textContent = `Check-in · ${ev.name}`;
    document.title = `Check-in · ${ev.name}`;
  } catch (err) {
    // the page still scans; the name is a nicety
  }
  ready();
  refreshCounts();
  setInterval(refreshCounts, 5000);
})();
