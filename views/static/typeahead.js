// A text box with live suggestions. The server sends suggestions together with the text they were
// computed for (`for_text`); the box shows them only while they fit the text on screen, and a chip
// or Tab always edits the text as it is now: it replaces the word being typed, keeping its case.
const WORD_AT_END = /\p{L}*'?\p{L}*$/u;
const DEBOUNCE_MS = 120;
const DOUBLE_CLICK_MS = 400; // a second tap this soon after a chip is the same gesture (touch has no dblclick)
const SAVED = "typeahead-text"; // sessionStorage: per browser tab

// A next word (nothing of it typed yet) at the start of the text or of a sentence starts with a capital,
// as a phone's keyboard writes it ("the end." + "the" -> "the end. The").
function caseFor(value, partial, word) {
  if (partial) return matchCase(partial, word);
  const before = value.replace(/\s+$/u, "");
  return !before || /[.!?]["')\]]*$/u.test(before) ? word.charAt(0).toUpperCase() + word.slice(1) : word;
}

function matchCase(typed, word) {
  const letters = typed.replace(/[^\p{L}]/gu, "");
  if (letters.length > 1 && letters === letters.toUpperCase() && letters !== letters.toLowerCase()) {
    return word.toUpperCase(); // SPI -> SPIRIT
  }
  if (letters && letters[0] !== letters[0].toLowerCase()) {
    return word.charAt(0).toUpperCase() + word.slice(1); // Spi -> Spirit
  }
  return word;
}

// How the person last acted, keyboard or pointer (once per page: components mount more than once).
if (!window.__taLastInput) {
  window.__taLastInput = "pointer";
  document.addEventListener("keydown", () => (window.__taLastInput = "key"), true);
  document.addEventListener("pointerdown", () => (window.__taLastInput = "pointer"), true);
}

function setup(root, api) {
  const ta = root.querySelector("textarea");
  const typed = root.querySelector(".ghost .typed");
  const hint = root.querySelector(".ghost .hint");
  const ghost = root.querySelector(".ghost");
  const completeRow = root.querySelector(".chips.complete");
  const nextRow = root.querySelector(".chips.next");
  const completeLabel = root.querySelector(".complete-label");
  const nextLabel = root.querySelector(".next-label");
  const state = { data: {}, nonce: null, timer: null, best: null, cut: 0, lastChip: -Infinity };

  // Kept in the browser tab as well: the last keys may not reach the server when the person clicks
  // another page at once (the server drops them with that page), and a reload keeps the text too.
  const save = () => {
    try { sessionStorage.setItem(SAVED, ta.value); } catch (e) { /* storage off: the server's copy */ }
  };
  const saved = () => {
    try { return sessionStorage.getItem(SAVED); } catch (e) { return null; }
  };
  const report = () => {
    clearTimeout(state.timer);
    save();
    api.setStateValue("text", ta.value);
  };
  const reportSoon = () => {
    clearTimeout(state.timer);
    save();
    state.timer = setTimeout(report, DEBOUNCE_MS);
  };

  const replaceWord = (word, then) => {
    const value = ta.value;
    const partial = value.match(WORD_AT_END)[0];
    const s = state.data.suggestions || {};
    // After "yes," or "42" the word goes after a space (the server read it there).
    const gap = !partial && value === s.for_text ? s.gap || "" : "";
    let insert = gap + caseFor(value, partial, word) + " ";
    if (then) {
      const caps = insert === insert.toUpperCase() && insert !== insert.toLowerCase() && partial.length > 1;
      insert += (caps ? then.toUpperCase() : then) + " ";
    }
    ta.value = value.slice(0, value.length - partial.length) + insert;
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
    render();
    report();
  };

  const chip = (word, p, onClick) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.word = word;
    b.append(word);
    const s = document.createElement("span");
    s.className = "p";
    s.textContent = p < 0.005 ? "<1%" : `${Math.round(p * 100)}%`;
    b.append(s);
    b.addEventListener("click", (e) => {
      // A double click's second click lands on whatever chip sits there by then: the suggestions that came
      // back for the text the first click made ("and" -> "anderssein the "). One click, one word.
      if (e.detail > 1 || performance.now() - state.lastChip < DOUBLE_CLICK_MS) return;
      state.lastChip = performance.now();
      hold();
      onClick();
    });
    return b;
  };

  // The rows keep their place and height for a double click's time: emptied until the next suggestions come,
  // they folded away, and the second click landed on the page below them (the caret left the box, and a key
  // typed at once went nowhere).
  const hold = () => {
    root.querySelectorAll(".row").forEach((row) => {
      row.style.minHeight = `${row.offsetHeight}px`;
      row.classList.add("held");
    });
    clearTimeout(state.holding);
    state.holding = setTimeout(() => root.querySelectorAll(".row").forEach((row) => {
      row.style.minHeight = "";
      row.classList.remove("held");
    }), DOUBLE_CLICK_MS);
  };

  const render = () => {
    const value = ta.value;
    const s = state.data.suggestions || {};
    const forText = s.for_text ?? null;
    const partial = value.match(WORD_AT_END)[0];
    // Suggestions fit when they were made for this text, or for its beginning while the same
    // word is still being typed (then only the completions that still match are kept).
    const extra = forText !== null && value.startsWith(forText) ? value.slice(forText.length) : null;
    const sameWord = extra !== null && (extra === "" || (/^\p{L}+$/u.test(extra) && partial.length > extra.length));
    const lower = partial.toLowerCase();
    const completions = sameWord ? (s.completions || []).filter(([w]) => w.startsWith(lower) && w !== lower) : [];
    // The words after the likeliest word here: the typed one itself when it is already a word ("then").
    const after = sameWord && extra === "" ? s.next_after || "" : "";
    const next = after ? s.next_words || [] : [];
    state.best = completions.length ? completions[0][0] : null;

    completeLabel.textContent = partial ? `Complete “${partial}”` : "Next word";
    completeRow.replaceChildren(...completions.map(([w, p]) => chip(caseFor(value, partial, w), p, () => replaceWord(w))));
    nextLabel.textContent = next.length ? `Then (after “${caseFor(value, partial, after)}”)` : "";
    nextRow.replaceChildren(...next.map(([w, p]) => chip(w, p, () => replaceWord(after, w))));
    root.dataset.for = completions.length ? value : "";

    const atEnd = ta.selectionStart === value.length && ta.getRootNode().activeElement === ta; // in a shadow root
    typed.textContent = value;
    // Grey text only for the word being typed: after a space it would always propose a next word, and Tab would
    // never leave the box (the chips still offer next words). Not in an empty box either (over the placeholder),
    // nor once Esc has dismissed it for this text, nor when the word typed is already the likeliest word
    // ("then": Tab would make it "thence"; while typing ahead of the suggestions, as far as they can tell).
    const ahead = sameWord ? (s.completions || []).find(([w]) => w.startsWith(lower)) : undefined;
    const typedIsBest = after ? after === lower : ahead !== undefined && ahead[0] === lower;
    const shown = atEnd && state.best && partial && !typedIsBest && value !== state.dismissed;
    hint.textContent = shown ? matchCase(partial, state.best).slice(partial.length) : "";
    ghost.scrollTop = ta.scrollTop;
  };

  ta.addEventListener("input", () => {
    const max = state.data.max_chars || 5000;
    if (ta.value.length > max) {
      const cut = ta.value.length - max;
      ta.value = ta.value.slice(cut); // keep the end: that is where the writing goes on
      ta.setSelectionRange(ta.value.length, ta.value.length);
      state.cut += cut; // a paste, then each key typed at the limit: all that went, not the last one
      api.setStateValue("cut", state.cut);
    } else if (state.cut && ta.value.length < max) {
      state.cut = 0; // the note about a cut paste goes once the text is edited down
      api.setStateValue("cut", 0);
    }
    render();
    reportSoon();
  });
  ta.addEventListener("keydown", (e) => {
    if (e.key === "Tab" && !e.shiftKey && hint.textContent && state.best) {
      e.preventDefault(); // only when there is a completion to take; otherwise Tab moves on
      replaceWord(state.best);
    } else if (e.key === "Escape" && hint.textContent) {
      state.dismissed = ta.value; // the grey text goes, and Tab moves on, until the text changes
      render();
    }
  });
  ta.addEventListener("scroll", () => (ghost.scrollTop = ta.scrollTop));
  ta.addEventListener("blur", () => {
    report();
    render(); // no grey text in a box that is not being typed in
    // The second click of a double click on a chip lands wherever the chips have moved to by then (the rows
    // empty until the suggestions for the new text come): it must not take the caret out of the box.
    if (performance.now() - state.lastChip < DOUBLE_CLICK_MS) setTimeout(() => ta.focus({ preventScroll: true }), 0);
  });
  // Nor a press on a row's label or the space between chips (the chips keep the caret the same way).
  root.querySelectorAll(".row").forEach((row) => row.addEventListener("mousedown", (e) => e.preventDefault()));
  ["select", "click", "keyup", "focus"].forEach((ev) => ta.addEventListener(ev, render));

  return (data) => {
    state.data = data || {};
    ta.placeholder = state.data.placeholder || "";
    const set = state.data.set_text || {};
    if (state.nonce === null) {
      state.nonce = set.nonce ?? "";
      const start = saved() ?? state.data.text ?? ""; // back on the page: the text is kept
      if (!ta.value && start) {
        ta.value = start;
        report();
      }
    } else if (set.nonce && set.nonce !== state.nonce) {
      state.nonce = set.nonce;
      ta.value = set.text ?? ta.value;
      report();
      if (window.__taLastInput === "key") {
        // Appended by keyboard: the button greys, and the focus would go to the top of the page. The writing
        // goes on here. (Not after a tap: on a phone it would open the keyboard over the page.)
        ta.focus({ preventScroll: true });
        ta.setSelectionRange(ta.value.length, ta.value.length);
        ta.scrollIntoView({ block: "center" }); // focus alone left it under the page's sticky header
      }
    }
    render();
  };
}

export default function (component) {
  const { parentElement, data, setStateValue } = component;
  const root = parentElement.querySelector(".ta");
  if (!root.__update) root.__update = setup(root, { setStateValue });
  root.__update(data);
}
