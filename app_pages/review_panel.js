// The one-image review panel: every decision is made here, in the browser, in the order the keys
// were pressed, and sent to the server whole when the person submits (app_pages/review_panel.py).
//
// Keys (outside a text field): 1-9, 0, then a-z toggle the class shown with that key; Ctrl+Enter
// accepts; Shift+Enter rejects every suggestion; / focuses "add a label"; arrows move; Ctrl+Z
// undoes the last submission, Ctrl+Shift+Z (or Ctrl+Y) redoes it. In the add-label field an
// exact prefix match is highlighted; Enter adds that one class and clears the field; Esc leaves
// it; Ctrl+Enter still submits; Ctrl+Z stays the field's own.
// Keys pressed after a submission, before the next image has arrived, wait and are then applied to
// the next image, in order.

const REGISTRY = (window.__mumicReviewPanel = window.__mumicReviewPanel || {});

function matches(panel, text) {
  const q = text.trim().toLocaleLowerCase();
  if (!q) return [];
  const pool = panel.data.items.filter((it) => !panel.on.has(it.id));
  const prefix = pool.filter((it) => it.name.toLocaleLowerCase().startsWith(q));
  const inner = pool.filter((it) => !prefix.includes(it) && it.name.toLocaleLowerCase().includes(q));
  return [...prefix, ...inner].slice(0, 8);
}

function render(panel) {
  const { data, root } = panel;
  root.replaceChildren();
  root.setAttribute("data-token", data.token);
  root.setAttribute("data-pending", panel.pending ? "1" : "0");
  const shown = data.items.filter((it, k) => k < panel.visible || panel.on.has(it.id));
  const actions = el(
    "div",
    { class: "actions" },
    el("button", { class: "primary", type: "button", textContent: "Accept", title: "Ctrl+Enter", "data-act": "accept" }),
    el("button", { type: "button", textContent: "Reject all", title: "Shift+Enter", "data-act": "reject" }),
    el("button", { type: "button", textContent: "\u2190", title: "Previous image (\u2190)", "data-act": "prev", disabled: !data.can_prev }),
    el("button", { type: "button", textContent: "\u2192", title: "Next image (\u2192)", "data-act": "next" }),
    el("button", { type: "button", textContent: "Undo", title: "Undo your last submission (Ctrl+Z)", "data-act": "undo" }),
    el("button", { type: "button", textContent: "Redo", title: "Redo what you undid (Ctrl+Shift+Z)", "data-act": "redo", disabled: !data.can_redo })
  );
  root.append(actions);
  const list = el("div", { class: "toggles" });
  for (const it of shown) {
    const on = panel.on.has(it.id);
    const note = it.note ? ` \u00b7 ${it.note}` : "";
    const prob = data.blind || it.prob === null ? "" : ` ${Math.round(it.prob * 100)}%`;
    const button = el(
      "button",
      { type: "button", class: on ? "toggle on" : "toggle", "data-id": String(it.id), title: it.name },
      el("span", { class: "key", textContent: it.key || "" }),
      el("span", { class: "box", textContent: on ? "\u2611" : "\u2610" }),
      el("span", { class: "name", textContent: it.name }),
      el("span", { class: "prob", textContent: prob + note })
    );
    button.setAttribute("aria-pressed", on ? "true" : "false");
    list.append(button);
  }
  root.append(list);
  if (shown.length < data.items.length) {
    root.append(
      el("button", {
        type: "button",
        class: "more",
        textContent: `Show all ${data.items.length} classes`,
        "data-act": "more",
      })
    );
  }
  const input = el("input", {
    type: "text",
    class: "add",
    placeholder: "Add a label: type, Enter adds the highlighted class (/ to focus)",
    value: panel.query,
  });
  input.setAttribute("aria-label", "Add a label");
  const menu = el("div", { class: "menu" });
  const found = matches(panel, panel.query);
  found.forEach((it, k) => {
    const option = el("div", { class: k === 0 ? "option first" : "option", textContent: it.name, "data-id": String(it.id) });
    menu.append(option);
  });
  if (panel.query.trim() && !found.length) menu.append(el("div", { class: "none", textContent: "no class by that name" }));
  root.append(input, menu);
  root.append(el("div", { class: "status", textContent: panel.pending ? "Saving\u2026" : panel.message || "" }));
  if (panel.focusInput) {
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }
}

function toggle(panel, id) {
  if (panel.on.has(id)) panel.on.delete(id);
  else panel.on.add(id);
}

function send(panel, action) {
  panel.seq += 1;
  const shownIds = panel.data.items.filter((it, k) => k < panel.visible || panel.on.has(it.id)).map((it) => it.id);
  panel.pending = action === "accept" || action === "reject" || action === "undo" || action === "redo" ? panel.seq : 0;
  panel.setTriggerValue("action", {
    action,
    seq: panel.seq,
    token: panel.data.token,
    present: action === "accept" ? [...panel.on] : [],
    shown: shownIds,
  });
}

// One key press (or click) on the current image; returns true when it was handled.
function apply(panel, event) {
  const key = event.key;
  const ctrl = event.ctrlKey || event.metaKey;
  if (ctrl && key === "Enter") return send(panel, "accept"), true;
  if (event.shiftKey && key === "Enter" && !inTextField(event)) return send(panel, "reject"), true;
  if (inTextField(event)) return false;
  if (ctrl && (key === "z" || key === "Z") && !event.shiftKey) return send(panel, "undo"), true;
  if (ctrl && ((key === "z" || key === "Z") && event.shiftKey || key === "y")) return send(panel, "redo"), true;
  if (ctrl || event.altKey) return false;
  if (key === "ArrowLeft" && panel.data.can_prev) return send(panel, "prev"), true;
  if (key === "ArrowRight") return send(panel, "next"), true;
  if (key === "/") {
    panel.focusInput = true;
    render(panel);
    panel.focusInput = false;
    return true;
  }
  const item = panel.data.items.find((it) => it.key && it.key === key.toLocaleLowerCase() && key.length === 1);
  if (item) {
    toggle(panel, item.id);
    render(panel);
    return true;
  }
  return false;
}

function onKey(panel, event) {
  if (!panel.root.isConnected) return;
  const ctrl = event.ctrlKey || event.metaKey;
  const fromInput = inTextField(event);
  const interesting =
    (ctrl && ["Enter", "z", "Z", "y"].includes(event.key)) ||
    (!ctrl && !event.altKey && !fromInput && (event.key.length === 1 || event.key.startsWith("Arrow") || event.key === "Enter"));
  if (!interesting) return;
  if (fromInput && !(ctrl && event.key === "Enter")) return; // the field's own keys, Ctrl+Z included
  if (panel.pending) {
    // The next image is on its way: keep the key for it.
    panel.queue.push({ key: event.key, ctrlKey: event.ctrlKey, metaKey: event.metaKey, shiftKey: event.shiftKey, altKey: false, composedPath: () => [] });
    event.preventDefault();
    return;
  }
  if (apply(panel, event)) event.preventDefault();
}

function drain(panel) {
  while (panel.queue.length && !panel.pending) apply(panel, panel.queue.shift());
}

export default function (component) {
  const { data, parentElement, setTriggerValue, key } = component;
  let panel = REGISTRY[key];
  const fresh = !panel || panel.data.token !== data.token;
  if (!panel) {
    panel = REGISTRY[key] = { seq: 0, pending: 0, queue: [], query: "", message: "", visible: 0 };
  }
  panel.setTriggerValue = setTriggerValue;
  mountRoot(panel, parentElement, "panel");
  if (fresh) {
    panel.on = new Set(data.items.filter((it) => it.on).map((it) => it.id));
    panel.visible = data.visible;
    panel.query = "";
  }
  panel.data = data;
  panel.message = data.message || "";
  if (panel.pending && data.ack >= panel.pending) panel.pending = 0;
  render(panel);
  drain(panel);
  return keepListening(panel, listen);
}

function listen(panel) {
  const root = panel.root;
  const onClick = (event) => {
    const target = event.target.closest("[data-id],[data-act]");
    if (!target || panel.pending) return;
    const act = target.getAttribute("data-act");
    if (act === "more") {
      panel.visible = panel.data.items.length;
      render(panel);
    } else if (act) {
      send(panel, act);
      render(panel);
    } else if (target.classList.contains("option")) {
      panel.on.add(Number(target.getAttribute("data-id")));
      panel.query = "";
      panel.focusInput = true;
      render(panel);
      panel.focusInput = false;
    } else {
      toggle(panel, Number(target.getAttribute("data-id")));
      render(panel);
    }
  };
  const onInput = (event) => {
    if (!event.target.classList || !event.target.classList.contains("add")) return;
    panel.query = event.target.value;
    panel.focusInput = true;
    render(panel);
    panel.focusInput = false;
  };
  const onFieldKey = (event) => {
    if (!event.target.classList || !event.target.classList.contains("add")) return;
    if (event.key === "Escape") {
      panel.query = "";
      render(panel);
      event.preventDefault();
    } else if (event.key === "Enter" && !(event.ctrlKey || event.metaKey)) {
      const [first] = matches(panel, panel.query);
      if (first) {
        panel.on.add(first.id);
        panel.query = "";
      }
      panel.focusInput = true;
      render(panel);
      panel.focusInput = false;
      event.preventDefault();
    }
  };
  const keyHandler = (event) => onKey(panel, event);
  root.addEventListener("click", onClick);
  root.addEventListener("input", onInput);
  root.addEventListener("keydown", onFieldKey);
  document.addEventListener("keydown", keyHandler, true);
  return () => {
    root.removeEventListener("click", onClick);
    root.removeEventListener("input", onInput);
    root.removeEventListener("keydown", onFieldKey);
    document.removeEventListener("keydown", keyHandler, true);
  };
}
