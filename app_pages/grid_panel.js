// The review grid: every tile's classes are chosen here, in the browser, and the page is sent whole
// on Accept or Save (app_pages/grid_panel.py). Typing costs no server round trip, so nothing typed
// is lost; a tile fixed by hand keeps its fix when the threshold moves (same token, new proposals).
//
// Keys in a tile's field: type, Enter adds the highlighted class (an exact prefix first);
// Backspace in the empty field removes the last class; Tab / Shift+Tab move between tiles; Esc
// leaves the field. Anywhere: Ctrl+Enter accepts the page, Ctrl+Shift+Enter saves it as shown.

const REGISTRY = (window.__mumicGridPanel = window.__mumicGridPanel || {});

function matches(panel, tile, text) {
  const q = text.trim().toLocaleLowerCase();
  if (!q) return [];
  const chosen = panel.chosen.get(tile.id);
  const pool = panel.data.classes.filter((c) => !chosen.includes(c.id));
  const prefix = pool.filter((c) => c.name.toLocaleLowerCase().startsWith(q));
  const inner = pool.filter((c) => !prefix.includes(c) && c.name.toLocaleLowerCase().includes(q));
  return [...prefix, ...inner].slice(0, 6);
}

function names(panel) {
  return new Map(panel.data.classes.map((c) => [c.id, c.name]));
}

function sameList(a, b) {
  return a.length === b.length && a.every((x, k) => x === b[k]);
}

function render(panel) {
  const { data, root } = panel;
  const focused = panel.focusTile;
  root.replaceChildren();
  root.setAttribute("data-token", data.token);
  root.setAttribute("data-pending", panel.pending ? "1" : "0");
  const touched = data.tiles.filter((t) => panel.touched.has(t.id)).length;
  root.append(
    el(
      "div",
      { class: "actions" },
      el("button", {
        class: "primary",
        type: "button",
        textContent: `Accept page (\u2265 ${data.threshold.toFixed(2)}${touched ? `; ${touched} fixed kept` : ""})`,
        title: "Ctrl+Enter. Untouched tiles: their proposals saved present, the other classes assumed absent. "
          + "Tiles fixed by hand: saved as shown.",
        "data-act": "accept",
        disabled: data.blind,
      }),
      el("button", { type: "button", textContent: "Save page as shown", title: "Ctrl+Shift+Enter", "data-act": "save" }),
      el("button", { type: "button", textContent: "Undo my last submission", "data-act": "undo" })
    )
  );
  const byId = names(panel);
  const grid = el("div", { class: "tiles" });
  for (const t of data.tiles) {
    const chosen = panel.chosen.get(t.id);
    const picture = t.src
      ? el("img", { src: t.src, alt: t.name, draggable: false })
      : el("div", { class: "broken", textContent: `Cannot show this image: ${t.problem}` });
    const top = t.top.map(([, name, p]) => `${name} ${Math.round(p * 100)}%`).join(" \u00b7 ");
    const chips = el("div", { class: "chips" });
    for (const id of chosen) {
      chips.append(
        el("span", { class: "chip", "data-class": String(id) }, byId.get(id) || String(id),
          el("button", { type: "button", class: "remove", textContent: "\u00d7", "aria-label": `Remove ${byId.get(id)}`, "data-remove": String(id), tabIndex: -1 }))
      );
    }
    const query = panel.queries.get(t.id) || "";
    const input = el("input", { type: "text", class: "add", placeholder: "add a class\u2026", value: query });
    input.setAttribute("data-tile", String(t.id));
    input.setAttribute("aria-label", `Classes of ${t.name}`);
    const menu = el("div", { class: "menu" });
    if (query.trim()) {
      const found = matches(panel, t, query);
      found.forEach((c, k) => menu.append(el("div", { class: k === 0 ? "option first" : "option", textContent: c.name, "data-option": String(c.id), "data-tile": String(t.id) })));
      if (!found.length) menu.append(el("div", { class: "none", textContent: "no class by that name" }));
    }
    const tile = el(
      "div",
      { class: `tile${panel.touched.has(t.id) ? " touched" : ""}`, "data-id": String(t.id) },
      picture,
      el("div", { class: "name", textContent: t.name, title: t.name }),
      el("div", { class: "top", textContent: data.blind ? "" : top }),
      chips,
      input,
      menu,
      el("div", { class: "state", textContent: panel.touched.has(t.id) ? "Fixed by hand" : "" })
    );
    grid.append(tile);
  }
  root.append(grid);
  root.append(el("div", { class: "status", textContent: panel.pending ? "Saving\u2026" : panel.message || "" }));
  if (focused !== null && focused !== undefined) {
    const input = root.querySelector(`input[data-tile="${focused}"]`);
    if (input) {
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }
  }
}

function choose(panel, tileId, chosen) {
  panel.chosen.set(tileId, chosen);
  const tile = panel.data.tiles.find((t) => t.id === tileId);
  if (sameList(chosen, tile.chosen)) panel.touched.delete(tileId);
  else panel.touched.add(tileId);
}

function send(panel, action) {
  panel.seq += 1;
  panel.pending = panel.seq;
  const tiles = {};
  for (const t of panel.data.tiles) tiles[t.id] = { chosen: panel.chosen.get(t.id), touched: panel.touched.has(t.id) };
  panel.setTriggerValue("action", { action, seq: panel.seq, token: panel.data.token, tiles });
}

export default function (component) {
  const { data, parentElement, setTriggerValue, key } = component;
  let panel = REGISTRY[key];
  const fresh = !panel || panel.data.token !== data.token;
  if (!panel) panel = REGISTRY[key] = { seq: 0, pending: 0, focusTile: null };
  panel.setTriggerValue = setTriggerValue;
  mountRoot(panel, parentElement, "grid");
  if (fresh) {
    panel.chosen = new Map(data.tiles.map((t) => [t.id, [...t.chosen]]));
    panel.touched = new Set();
    panel.queries = new Map();
    panel.focusTile = null;
  } else {
    // Same page, new proposals (the threshold moved): untouched tiles follow, fixed ones stay.
    for (const t of data.tiles) if (!panel.touched.has(t.id)) panel.chosen.set(t.id, [...t.chosen]);
  }
  panel.data = data;
  panel.message = data.message || "";
  if (panel.pending && data.ack >= panel.pending) panel.pending = 0;
  render(panel);
  return keepListening(panel, listen);
}

function listen(panel) {
  const root = panel.root;
  const tileOf = (node) => Number(node.getAttribute("data-tile"));
  const onClick = (event) => {
    if (panel.pending) return;
    const target = event.target.closest("[data-act],[data-remove],[data-option]");
    if (!target) return;
    if (target.hasAttribute("data-act")) {
      target.blur();
      send(panel, target.getAttribute("data-act"));
      render(panel);
      return;
    }
    if (target.hasAttribute("data-remove")) {
      const id = Number(target.getAttribute("data-remove"));
      const tileId = Number(target.closest(".tile").getAttribute("data-id"));
      choose(panel, tileId, panel.chosen.get(tileId).filter((c) => c !== id));
      panel.focusTile = tileId;
    } else {
      const tileId = tileOf(target);
      choose(panel, tileId, [...panel.chosen.get(tileId), Number(target.getAttribute("data-option"))]);
      panel.queries.set(tileId, "");
      panel.focusTile = tileId;
    }
    render(panel);
  };
  const onInput = (event) => {
    if (!event.target.classList || !event.target.classList.contains("add")) return;
    const tileId = tileOf(event.target);
    panel.queries.set(tileId, event.target.value);
    panel.focusTile = tileId;
    render(panel);
  };
  const onFocus = (event) => {
    if (event.target.classList && event.target.classList.contains("add")) panel.focusTile = tileOf(event.target);
  };
  const onKey = (event) => {
    if (!panel.root.isConnected) return;
    const ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && event.key === "Enter") {
      event.preventDefault();
      event.stopPropagation();
      if (!panel.pending) {
        send(panel, event.shiftKey ? "save" : "accept");
        render(panel);
      }
      return;
    }
    const field = event.composedPath().find((n) => n && n.classList && n.classList.contains("add"));
    if (!field || panel.pending) return;
    const tileId = tileOf(field);
    const tile = panel.data.tiles.find((t) => t.id === tileId);
    if (event.key === "Enter") {
      const [first] = matches(panel, tile, panel.queries.get(tileId) || "");
      if (first) choose(panel, tileId, [...panel.chosen.get(tileId), first.id]);
      panel.queries.set(tileId, "");
      panel.focusTile = tileId;
      render(panel);
      event.preventDefault();
    } else if (event.key === "Backspace" && !field.value) {
      choose(panel, tileId, panel.chosen.get(tileId).slice(0, -1));
      panel.focusTile = tileId;
      render(panel);
      event.preventDefault();
    } else if (event.key === "Escape") {
      panel.queries.set(tileId, "");
      panel.focusTile = null;
      render(panel);
      event.preventDefault();
    }
  };
  root.addEventListener("click", onClick);
  root.addEventListener("input", onInput);
  root.addEventListener("focusin", onFocus);
  document.addEventListener("keydown", onKey, true);
  return () => {
    root.removeEventListener("click", onClick);
    root.removeEventListener("input", onInput);
    root.removeEventListener("focusin", onFocus);
    document.removeEventListener("keydown", onKey, true);
  };
}
