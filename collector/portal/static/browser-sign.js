// Approvals signed in the browser (docs/portal.md, "Signed approvals").
// The Ed25519 key is generated non-extractable and kept in IndexedDB; only its public
// half is exported (for the fingerprint and certification). The page signs the exact
// canonical bytes the server sends; it never builds the approval itself.
"use strict";

const DB_NAME = "aftercare-approval";
const STORE = "keys";
const KEY_ID = "approval-key";

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, action) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const request = action(db.transaction(STORE, mode).objectStore(STORE));
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

const loadKey = () => withStore("readonly", (s) => s.get(KEY_ID));
const saveKey = (pair) => withStore("readwrite", (s) => s.put(pair, KEY_ID));

function b64(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)));
}

function fromB64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

async function describe(pair) {
  const raw = await crypto.subtle.exportKey("raw", pair.publicKey);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", raw));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  return { fingerprint: "sha256:" + hex, publicKey: b64(raw) };
}

function show(id, text) {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
}

// The translated summary (label, value) lines the server made from the exact bytes.
function showSummary(lines) {
  const list = document.getElementById("sign-summary");
  if (!list || !Array.isArray(lines)) return;
  list.replaceChildren();
  for (const [label, value] of lines) {
    const term = document.createElement("dt");
    term.textContent = label;
    const detail = document.createElement("dd");
    detail.textContent = value;
    list.append(term, detail);
  }
}

function showAnswer(answer) {
  showSummary(answer.summary);
  show("sign-text", answer.exact || JSON.stringify(answer.text, null, 2));
}

async function enrolPage() {
  const button = document.getElementById("create-key");
  const refresh = async () => {
    const pair = await loadKey();
    if (!pair) return;
    const info = await describe(pair);
    show("key-fingerprint", info.fingerprint);
    show("key-public", info.publicKey);
  };
  button.addEventListener("click", async () => {
    try {
      const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
      await saveKey(pair);
      await refresh();
    } catch (error) {
      show("sign-error", "Cannot create a key in this browser: " + error);
    }
  });
  await refresh();
}

async function signPage(form) {
  const pair = await loadKey();
  if (!pair) {
    form.querySelector("#approve").disabled = true;
    return;
  }
  const info = await describe(pair);
  show("sign-fingerprint", info.fingerprint);
  const fetchBody = async () => {
    const url = new URL(form.dataset.toSign, location.href);
    url.searchParams.set("key", info.fingerprint);
    const minutes = form.querySelector("#minutes");
    if (minutes && minutes.value) url.searchParams.set("minutes", minutes.value);
    const response = await fetch(url, { credentials: "same-origin" });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || "the server refused: " + response.status);
    return answer;
  };
  const preview = async () => {
    try {
      const answer = await fetchBody();
      showAnswer(answer);
      show("sign-error", "");
    } catch (error) {
      show("sign-error", String(error.message || error));
    }
  };
  form.addEventListener("submit", async (event) => {
    if (form.dataset.signed === "yes") return;
    event.preventDefault();
    try {
      const answer = await fetchBody();
      showAnswer(answer);
      const body = fromB64(answer.body);
      const signature = await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, body);
      form.querySelector("#sign-key").value = info.fingerprint;
      form.querySelector("#sign-body").value = answer.body;
      form.querySelector("#sign-signature").value = b64(signature);
      form.dataset.signed = "yes";
      form.submit();
    } catch (error) {
      show("sign-error", String(error.message || error));
    }
  });
  await preview();
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("create-key")) enrolPage();
  const form = document.getElementById("browser-sign");
  if (form) signPage(form);
});
