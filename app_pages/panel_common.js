// Helpers shared by the browser panels (review_panel.js, grid_panel.js, sweep_panel.js):
// app_pages/ui.py's component_assets puts this file before each panel's own code.

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

// A field that takes typed text (not a radio, checkbox or slider, whose keys the panels may use).
function isTextEntry(node) {
  if (node.tagName !== "INPUT") return false;
  return ["text", "search", "email", "password", "number", "url", "tel", ""].includes((node.getAttribute("type") || "").toLowerCase());
}

function inTextField(event) {
  const path = event.composedPath ? event.composedPath() : [event.target];
  return path.some((n) => n && n.tagName && (isTextEntry(n) || n.tagName === "TEXTAREA" || n.isContentEditable));
}

// The panel's root element in ``parentElement``, made again when Streamlit has moved or dropped it
// (only an earlier root goes: Streamlit keeps the component's stylesheet beside it).
function mountRoot(panel, parentElement, rootClass) {
  if (!panel.root || !panel.root.isConnected || panel.root.parentNode !== parentElement) {
    panel.root = el("div", { class: rootClass });
    for (const old of parentElement.querySelectorAll(`:scope > .${rootClass}`)) old.remove();
    parentElement.append(panel.root);
  }
}

// One set of listeners per root, however often Streamlit calls the component's function (a second
// set would apply every key twice); returns the cleanup Streamlit calls when it unmounts the panel.
function keepListening(panel, listen) {
  if (panel.listening !== panel.root) {
    if (panel.detach) panel.detach();
    panel.detach = listen(panel);
    panel.listening = panel.root;
  }
  return () => {
    if (panel.detach) panel.detach();
    panel.detach = null;
    panel.listening = null;
  };
}
