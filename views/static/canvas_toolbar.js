// streamlit-drawable-canvas hides its toolbar (undo, redo, reset) over the canvas's top-right
// corner until the mouse hovers it. A finger cannot hover: strokes that start in that corner go to
// the invisible toolbar and are lost. Give the toolbar a place of its own above the canvas, always
// shown, so every stroke on the drawing area counts (and undo is there on phones too).
//
// The canvas also waits 200 ms after each pen-up before it tells the app (a debounce inside the
// component, not a setting), the larger part of the wait for a reading when one person draws. At
// pen-up this presses the toolbar's own "Update the app with this drawing" button instead, which
// sends the drawing at once and cancels the pending send: one message per stroke, as before.
const STYLE = `
  :host { display: block; padding-top: 2.8rem; }
  .dc-toolbar, .dc-toolbar:hover, .dc-toolbar:focus-within { top: -2.75rem !important; opacity: 1 !important; }
`;

const SEND = 'button[title="Update the app with this drawing"]';

let penDownIn = null; // the canvas (its shadow root) where the pen last went down
let listening = false;

function watchPen(root) {
  if (root.__watchPen) return;
  root.__watchPen = true;
  root.addEventListener("pointerdown", (e) => { penDownIn = e.target.tagName === "CANVAS" ? root : null; }, true);
}

// On the window: the pen may be lifted outside the canvas, as the canvas itself knows.
function sendAtPenUp() {
  const root = penDownIn;
  penDownIn = null;
  if (!root) return;
  // After the canvas has handled this pen-up: it adds the stroke in a microtask of its own
  // mouseup or touchend handler, which may come in a later task than this pointerup.
  setTimeout(() => {
    const button = root.host.isConnected && root.querySelector(SEND);
    if (!button) return;
    button.click();
    window.__penUpSends = (window.__penUpSends || 0) + 1;
  }, 20);
}

function pinToolbars() {
  for (const host of document.querySelectorAll("[data-testid=stBidiComponentIsolated]")) {
    const root = host.shadowRoot;
    if (!root) continue;
    if (!root.__watched) {
      // A component fills its shadow root after the host is attached: watch inside it too.
      root.__watched = new MutationObserver(pinToolbars);
      root.__watched.observe(root, { childList: true, subtree: true });
    }
    if (root.querySelector(".dc-toolbar") && !root.querySelector("style[data-toolbar-above]")) {
      const style = document.createElement("style");
      style.dataset.toolbarAbove = "";
      style.textContent = STYLE;
      root.appendChild(style);
    }
    if (root.querySelector(SEND)) watchPen(root);
  }
}

export default function () {
  pinToolbars();
  if (!window.__toolbarObserver) {
    // A canvas mounts after this component, and again when it is cleared.
    window.__toolbarObserver = new MutationObserver(pinToolbars);
    window.__toolbarObserver.observe(document.body, { childList: true, subtree: true });
  }
  if (!listening) {
    // Beside this module's own state (penDownIn), whichever copy of the module watches the canvas.
    window.addEventListener("pointerup", sendAtPenUp, true);
    listening = true;
  }
}
