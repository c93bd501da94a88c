// Reports an id of this browser tab, kept in sessionStorage: the same after a reload (F5), another in
// another tab. The server keeps what the person drew under it, so a reload does not lose the drawing.
const KEY = "neural-playground-tab";

function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs https; this does not
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
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
  setStateValue("id", id);
}
