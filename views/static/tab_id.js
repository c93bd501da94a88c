// Reports an id of this browser tab, kept in sessionStorage: the same after a reload (F5), another in
// another tab. The server keeps what the person drew under it, so a reload does not lose the drawing.
// A duplicated tab starts with a copy of its origin's sessionStorage, id included (both tabs' drawings were
// kept under one id, and a reload of either showed the other's): each page asks the open tabs, once, whether
// its id is taken, and takes a new one if it is.
const KEY = "neural-playground-tab";
const CHANNEL = "neural-playground-tab-ids";

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs https; this does not
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function listen(id) {
  if (window.__tabIds || typeof BroadcastChannel === "undefined") return;
  const me = newId(); // this page: a reload is another one
  const channel = (window.__tabIds = new BroadcastChannel(CHANNEL));
  channel.onmessage = ({ data }) => {
    const mine = sessionStorage.getItem(KEY);
    if (data.ask === mine && data.from !== me) {
      channel.postMessage({ taken: mine, to: data.from }); // an older tab keeps its id
    } else if (data.taken === mine && data.to === me) {
      const fresh = newId();
      sessionStorage.setItem(KEY, fresh);
      try {
        window.__tabReport?.(fresh);
      } catch (e) { /* not on the Digits page now: it reports the new id when it is opened */ }
    }
  };
  channel.postMessage({ ask: id, from: me });
}

export default function (component) {
  const { setStateValue } = component;
  let id = null;
  try {
    id = sessionStorage.getItem(KEY);
    if (!id) {
      id = newId();
      sessionStorage.setItem(KEY, id);
    }
  } catch (e) {
    return; // storage off: nothing to restore from, nothing reported
  }
  window.__tabReport = (fresh) => setStateValue("id", fresh);
  listen(id);
  setStateValue("id", id);
}
