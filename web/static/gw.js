// The gateway's pages: a little plain JS over the JSON API. The API token
// sits in this page only (a meta tag), sent as a bearer header.
"use strict";
const token = document.querySelector('meta[name="sphere-token"]').content;
async function api(method, url, body, headers) {
  const h = Object.assign({"Authorization": "Bearer " + token}, headers || {});
  if (body !== undefined && !(body instanceof Blob)) { h["Content-Type"] = "application/json"; body = JSON.stringify(body); }
  const r = await fetch(url, {method, headers: h, body});
  const j = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}
const msg = t => { const m = document.getElementById("msg"); if (m) m.textContent = t; };
async function copy(text, what) {
  try { await navigator.clipboard.writeText(text); msg(what + " copied: " + text); }
  catch (e) { msg(what + ": " + text); }
}
api("GET", "/api/status").then(s => {
  const n = s.node || {};
  document.getElementById("status").textContent =
    `${s.servers ?? "?"} storage peers · ${s.params ? s.params.k + "-of-" + s.params.n : ""}` + (n.peers !== undefined ? ` · ${n.peers} members` : "");
}).catch(e => { document.getElementById("status").textContent = "grid: " + e.message; });
document.getElementById("open-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const c = document.getElementById("open-cap").value.trim();
  if (!c) return;
  if (/^sphere:mut-(ro|rw):/.test(c)) {
    try { const s = await api("POST", "/api/sites", {address: c}); location.href = s.shell; } catch (e) { alert(e.message); }
  } else location.href = "/uri/" + encodeURIComponent(c) + "/";
});
const body = document.body, capParam = body.dataset.cap, here = body.dataset.path || "";
const join = n => here ? here + "/" + n : n;
if (capParam !== undefined) {
  document.getElementById("share-here").onclick = async () => {
    try { copy((await api("POST", "/api/share", {cap: capParam, path: here})).readCap, "Read cap"); } catch (e) { msg(e.message); }
  };
  for (const a of document.querySelectorAll("a.share")) a.onclick = async ev => {
    ev.preventDefault();
    const name = a.closest("tr").dataset.name;
    try { copy((await api("POST", "/api/share", {cap: capParam, path: join(name)})).readCap, "Read cap of " + name); } catch (e) { msg(e.message); }
  };
  const mk = document.getElementById("mkdir");
  if (mk) mk.onclick = async () => {
    const name = prompt("Folder name");
    if (!name) return;
    try { await api("POST", "/api/mkdir", {cap: capParam, path: join(name)}); location.reload(); } catch (e) { msg(e.message); }
  };
  const upload = file => new Promise((resolve, reject) => {
    const row = document.createElement("div");
    row.innerHTML = `<span></span><div class="progress"><div></div></div>`;
    row.firstChild.textContent = file.name;
    document.getElementById("uploads").append(row);
    const bar = row.querySelector(".progress div");
    const x = new XMLHttpRequest();
    x.open("PUT", `/api/upload?cap=${encodeURIComponent(capParam)}&path=${encodeURIComponent(join(file.name))}`);
    x.setRequestHeader("Authorization", "Bearer " + token);
    x.upload.onprogress = e => { if (e.lengthComputable) bar.style.width = (100 * e.loaded / e.total) + "%"; };
    x.onload = () => x.status < 300 ? (bar.style.width = "100%", resolve()) : reject(new Error(x.responseText));
    x.onerror = () => reject(new Error("upload failed"));
    x.send(file);
  });
  const uploadAll = async files => {
    try { for (const f of files) await upload(f); location.reload(); } catch (e) { msg(e.message); }
  };
  const fi = document.getElementById("file-input");
  if (fi) fi.onchange = () => uploadAll(fi.files);
  const drop = document.getElementById("drop");
  if (drop) {
    for (const t of ["dragenter", "dragover"]) document.addEventListener(t, e => { e.preventDefault(); drop.classList.add("over"); });
    document.addEventListener("dragleave", () => drop.classList.remove("over"));
    document.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); uploadAll(e.dataTransfer.files); });
  }
}
