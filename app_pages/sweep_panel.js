// The class-sweep panel: one class, a page of tiles, each marked present or absent in the browser
// in the order the keys and clicks came; the page is sent whole on save (app_pages/sweep_panel.py).
//
// Keys (outside a text field): arrows move the cursor; Space flips the tile under it and moves on;
// a marks it present, x absent (and move on); Enter or Ctrl+Enter saves the page; Ctrl+Z undoes the
// last submission. Keys pressed after a save, before the next page has arrived, wait and are then
// applied to the next page, in order.

const REGISTRY = (window.__mumicSweepPanel = window.__mumicSweepPanel || {});

function counts(panel) {
  const present = panel.data.tiles.filter((t) => panel.marks.get(t.id)).length;
  return [present, panel.data.tiles.length - present];
}

function render(panel) {
  const { data, root } = panel;
  root.replaceChildren();
  root.setAttribute("data-token", data.token);
  root.setAttribute("data-class", data.class_name);
  root.setAttribute("data-pending", panel.pending ? "1" : "0");
  const [present, absent] = counts(panel);
  root.append(
    el(
      "div",
      { class: "actions" },
      el("button", {
        class: "primary",
        type: "button",
        textContent: `Save page: ${present} present, ${absent} absent`,
        title: "Enter or Ctrl+Enter",
        "data-act": "save",
        disabled: !data.tiles.length,
      }),
      el("button", { type: "button", textContent: "Undo my last submission", title: "Ctrl+Z", "data-act": "undo" })
    )
  );
  const grid = el("div", { class: "tiles" });
  grid.style.gridTemplateColumns = `repeat(${data.columns}, minmax(0, 1fr))`;
  data.tiles.forEach((t, k) => {
    const on = !!panel.marks.get(t.id);
    const picture = t.src
      ? el("img", { src: t.src, alt: t.name, draggable: false })
      : el("div", { class: "broken", textContent: `Cannot show this image: ${t.problem}` });
    const tile = el(
      "button",
      {
        type: "button",
        class: `tile${on ? " on" : ""}${k === panel.cursor ? " cursor" : ""}`,
        "data-id": String(t.id),
        "aria-pressed": on ? "true" : "false",
        title: `${t.name}: click or Space to flip`,
      },
      picture,
      el(
        "span",
        { class: "mark" },
        el("span", { class: "box", textContent: on ? "\u2611 present" : "\u2610 absent" }),
        el("span", { class: "prob", textContent: `${Math.round(t.prob * 100)}%` })
      ),
      el("span", { class: "name", textContent: t.name })
    );
    grid.append(tile);
  });
  root.append(grid);
  root.append(el("div", { class: "status", textContent: panel.pending ? "Saving\u2026" : panel.message || "" }));
}

function send(panel, action) {
  panel.seq += 1;
  panel.pending = panel.seq;
  const marks = {};
  for (const t of panel.data.tiles) marks[t.id] = !!panel.marks.get(t.id);
  panel.setTriggerValue("action", { action, seq: panel.seq, token: panel.data.token, marks });
}

function move(panel, by) {
  const n = panel.data.tiles.length;
  if (n) panel.cursor = Math.min(n - 1, Math.max(0, panel.cursor + by));
}

function mark(panel, value) {
  const tile = panel.data.tiles[panel.cursor];
  if (!tile) return;
  panel.marks.set(tile.id, value === null ? !panel.marks.get(tile.id) : value);
  move(panel, 1);
}

// One key press on the current page; returns true when it was handled.
function apply(panel, event) {
  const key = event.key;
  const ctrl = event.ctrlKey || event.metaKey;
  if (key === "Enter" && !event.shiftKey && !event.altKey) return send(panel, "save"), render(panel), true;
  if (ctrl && (key === "z" || key === "Z") && !event.shiftKey) return send(panel, "undo"), render(panel), true;
  if (ctrl || event.altKey) return false;
  const cols = panel.data.columns;
  const steps = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
  if (key in steps) move(panel, steps[key]);
  else if (key === " ") mark(panel, null);
  else if (key === "a" || key === "A") mark(panel, true);
  else if (key === "x" || key === "X") mark(panel, false);
  else return false;
  render(panel);
  return true;
}

function onKey(panel, event) {
  if (!panel.root.isConnected || inTextField(event)) return;
  const ctrl = event.ctrlKey || event.metaKey;
  const interesting =
    event.key === "Enter" ||
    (ctrl && ["z", "Z"].includes(event.key)) ||
    (!ctrl && !event.altKey && (event.key.startsWith("Arrow") || [" ", "a", "A", "x", "X"].includes(event.key)));
  if (!interesting) return;
  // A key meant for another widget (a focused select or button outside the panel) is left alone.
  const target = event.target;
  if (target && target !== document.body && !root_contains(panel, target) && target.closest && target.closest("[data-baseweb], button, [role=radiogroup]")) return;
  event.preventDefault();
  if (panel.pending) {
    panel.queue.push({ key: event.key, ctrlKey: event.ctrlKey, metaKey: event.metaKey, shiftKey: event.shiftKey, altKey: false });
    return;
  }
  apply(panel, event);
}

function root_contains(panel, node) {
  return panel.root.contains(node) || (panel.root.getRootNode() !== document && panel.root.getRootNode().host === node);
}

function drain(panel) {
  while (panel.queue.length && !panel.pending) apply(panel, panel.queue.shift());
}

export default function (component) {
  const { data, parentElement, setTriggerValue, key } = component;
  let panel = REGISTRY[key];
  const fresh = !panel || panel.data.token !== data.token;
  if (!panel) panel = REGISTRY[key] = { seq: 0, pending: 0, queue: [], cursor: 0 };
  panel.setTriggerValue = setTriggerValue;
  mountRoot(panel, parentElement, "sweep");
  if (fresh) {
    panel.marks = new Map(data.tiles.map((t) => [t.id, !!t.on]));
    panel.cursor = 0;
    // A new page takes the keys: the control that led here (the mode, the class) lets go of focus.
    const active = document.activeElement;
    if (active && active !== document.body && !root_contains(panel, active) && active.blur) active.blur();
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
    target.blur(); // keys go to the panel again, not to the clicked button
    const act = target.getAttribute("data-act");
    if (act) send(panel, act);
    else {
      const id = Number(target.getAttribute("data-id"));
      panel.cursor = panel.data.tiles.findIndex((t) => t.id === id);
      panel.marks.set(id, !panel.marks.get(id));
    }
    render(panel);
  };
  const keyHandler = (event) => onKey(panel, event);
  root.addEventListener("click", onClick);
  document.addEventListener("keydown", keyHandler, true);
  return () => {
    root.removeEventListener("click", onClick);
    document.removeEventListener("keydown", keyHandler, true);
  };
}
