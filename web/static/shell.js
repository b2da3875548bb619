// The shell: frames one app (sandbox="allow-scripts", its own origin),
// hands it one MessageChannel port per launch, and does what the app asks
// only after asking the user. See docs/web-api.md.
"use strict";
const token = document.querySelector('meta[name="sphere-token"]').content;
const site = document.body.dataset.site, startPath = document.body.dataset.path;
const frame = document.getElementById("app");
const statusEl = document.getElementById("app-status");
async function api(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"}, body: JSON.stringify(body)});
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}
// ask shows a question in the shell's bar; resolves with true/false (or the typed text).
function ask(text, wantInput) {
  const box = document.getElementById("ask"), input = document.getElementById("ask-input");
  document.getElementById("ask-text").textContent = text;
  input.hidden = !wantInput; input.value = "";
  box.hidden = false;
  return new Promise(resolve => {
    const done = v => { box.hidden = true; resolve(v); };
    document.getElementById("ask-yes").onclick = () => done(wantInput ? input.value.trim() : true);
    document.getElementById("ask-no").onclick = () => done(false);
  });
}
let launch = 0;          // the current launch's number
let dataGranted = false; // the app may use its private folder (asked once per page)
const shared = [];       // caps the user shared with the app, by handle
async function handle(method, p) {
  switch (method) {
  case "status":
    statusEl.textContent = String(p.text).slice(0, 200);
    return {ok: true};
  case "data.read": case "data.write": case "data.list":
    if (!dataGranted) {
      dataGranted = await ask("This app wants to keep its own data in your drive (folder apps/" + site + "). Allow?");
      if (!dataGranted) throw new Error("the user refused");
    }
    return api("/api/app/data", {site, op: method.slice(5), path: String(p.path || ""), data: p.data === undefined ? "" : String(p.data)});
  case "shared.request": {
    const c = await ask("This app asks to read something you choose. Paste a read cap to share with it, or deny:", true);
    if (!c) throw new Error("the user refused");
    shared.push(c);
    return {handle: shared.length - 1};
  }
  case "shared.read": {
    const c = shared[p.handle | 0];
    if (c === undefined) throw new Error("no such shared item");
    return api("/api/read", {cap: c, path: String(p.path || "")});
  }
  case "share.request": {
    const ok = await ask("This app asks you to share its item \"" + String(p.path) + "\" with a friend. Copy a read cap for it?");
    if (!ok) throw new Error("the user refused");
    await api("/api/app/data", {site, op: "list", path: ""});
    const r = await api("/api/share", {cap: "home", path: "apps/" + site + "/" + String(p.path || "")});
    statusEl.textContent = "Read cap to send your friend: " + r.readCap;
    return {ok: true};
  }
  }
  throw new Error("unknown method " + method);
}
async function start() {
  const n = ++launch;
  let port = null;
  const {url} = await api("/api/launch", {site, path: startPath});
  frame.onload = () => {
    // One port per launch, handed to the first document only: a frame
    // that navigated (to another app, say) never gets another.
    if (port || n !== launch) { statusEl.textContent = "The app navigated away; press Reload app."; return; }
    const ch = new MessageChannel();
    port = ch.port1;
    port.onmessage = async ev => {
      const {id, method, params} = ev.data || {};
      try { port.postMessage({id, result: await handle(String(method), params || {})}); }
      catch (e) { port.postMessage({id, error: e.message}); }
    };
    frame.contentWindow.postMessage({type: "sphere-port"}, "*", [ch.port2]);
  };
  frame.src = url;
}
document.getElementById("relaunch").onclick = () => start();
document.getElementById("copy-address").onclick = async () => {
  const a = document.body.dataset.address;
  try { await navigator.clipboard.writeText(a); statusEl.textContent = "Address copied"; } catch (e) { statusEl.textContent = a; }
};
start().catch(e => { statusEl.textContent = "launch failed: " + e.message; });
