// streamlit-drawable-canvas hides its toolbar (undo, redo, reset) over the canvas's top-right
// corner until the mouse hovers it. A finger cannot hover: strokes that start in that corner go to
// the invisible toolbar and are lost. Give the toolbar a place of its own above the canvas, always
// shown, so every stroke on the drawing area counts (and undo is there on phones too).
const STYLE = `
  :host { display: block; padding-top: 2.8rem; }
  .dc-toolbar, .dc-toolbar:hover, .dc-toolbar:focus-within { top: -2.75rem !important; opacity: 1 !important; }
`;

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
  }
}

export default function () {
  pinToolbars();
  if (!window.__toolbarObserver) {
    // A canvas mounts after this component, and again when it is cleared.
    window.__toolbarObserver = new MutationObserver(pinToolbars);
    window.__toolbarObserver.observe(document.body, { childList: true, subtree: true });
  }
}
