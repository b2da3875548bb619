// Sphere's app API: include <script src="/_sphere/app.js"></script>; it
// accepts the shell's port only from the parent window.
"use strict";
window.sphere = (() => {
  let port = null, seq = 0;
  const pending = new Map();
  let setReady;
  const ready = new Promise(r => { setReady = r; });
  addEventListener("message", ev => {
    if (port || ev.source !== parent || !ev.ports || !ev.ports[0] || !ev.data || ev.data.type !== "sphere-port") return;
    port = ev.ports[0];
    port.onmessage = m => {
      const {id, result, error} = m.data || {};
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      error !== undefined ? p.reject(new Error(error)) : p.resolve(result);
    };
    setReady();
  });
  async function call(method, params) {
    await ready;
    const id = ++seq;
    return new Promise((resolve, reject) => { pending.set(id, {resolve, reject}); port.postMessage({id, method, params}); });
  }
  return {
    ready,
    status: text => call("status", {text}),
    readData: path => call("data.read", {path}).then(r => r.data),
    writeData: (path, data) => call("data.write", {path, data}),
    listData: (path = "") => call("data.list", {path}).then(r => r.names),
    requestShared: () => call("shared.request", {}).then(r => r.handle),
    readShared: (handle, path = "") => call("shared.read", {handle, path}),
    requestShare: path => call("share.request", {path}),
  };
})();
