// Shared by the fleet table and the device page: safe DOM building, durations, fetching.
// Device ids and reasons come from the network: they only ever reach the page as text
// nodes or attribute values, never parsed as markup, and the hub's Content-Security-Policy
// forbids inline script besides.
"use strict";

const Fleet = (() => {
  const REFRESH_MS = 5000;

  // An element with attributes and children; strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // A duration in its largest whole unit, signed; "-" when unknown (as `hub status`).
  function duration(value) {
    if (value === null || value === undefined) return "-";
    const sign = value < 0 ? "-" : "";
    const size = Math.abs(value);
    for (const [unit, length] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (size >= length) return sign + Math.round(size / length) + unit;
    }
    return size >= 1 ? sign + Math.round(size) + "s" : sign + Math.round(size * 1000) + "ms";
  }

  function ago(elapsed) {
    return elapsed >= 1 ? duration(elapsed) + " ago" : "now";
  }

  function count(value) {
    return Number(value).toLocaleString("en-US");
  }

  function deviceLink(device) {
    return el("a", {href: "/device?id=" + encodeURIComponent(device)}, device);
  }

  // A table header row from [title, hint, numeric] triples (numbers align right).
  function header(row, columns) {
    row.replaceChildren(...columns.map(([title, hint, numeric]) =>
      el("th", {title: hint, class: numeric ? "num" : null}, title)));
  }

  function show(id, text) {
    const node = document.getElementById(id);
    node.textContent = text || "";
    node.hidden = !text;
  }

  async function getJson(url) {
    const response = await fetch(url, {cache: "no-store"});
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = {error: "the hub answered " + response.status + " without JSON"};
    }
    if (!response.ok) {
      const failure = new Error(body.error || "HTTP " + response.status);
      failure.status = response.status;
      throw failure;
    }
    return body;
  }

  // Run `refresh` now and every REFRESH_MS (never two at once); a failure is shown, and
  // the next success clears it.
  function every(refresh) {
    let running = false;
    async function once() {
      if (running) return;
      running = true;
      try {
        await refresh();
        show("error", "");
        document.getElementById("updated").textContent =
          "last update " + new Date().toLocaleTimeString();
      } catch (error) {
        show("error", "Could not refresh: " + error.message);
      } finally {
        running = false;
      }
    }
    once();
    setInterval(once, REFRESH_MS);
  }

  return {el, duration, ago, count, deviceLink, header, show, getJson, every};
})();
