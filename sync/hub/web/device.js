// One device: its figures, an SVG bar chart of events committed per minute, its streams
// and gaps, from /api/device?id=..., refreshed every few seconds.
"use strict";

(() => {
  const {el, duration, ago, count, header, show, getJson, every} = Fleet;
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 720, HEIGHT = 180, LEFT = 48, RIGHT = 8, TOP = 10, BOTTOM = 22;
  const device = new URLSearchParams(window.location.search).get("id") || "";

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toTimeString().slice(0, 5);
  }

  // One bar per minute, oldest on the left; an empty minute is a bar of height 0.
  function chart(minutes) {
    const counts = minutes.counts;
    const most = Math.max(1, ...counts);
    const plotWidth = WIDTH - LEFT - RIGHT, plotHeight = HEIGHT - TOP - BOTTOM;
    const step = plotWidth / counts.length;
    const root = svg("svg", {viewBox: "0 0 " + WIDTH + " " + HEIGHT, width: WIDTH,
      height: HEIGHT, role: "img", class: "chart",
      "aria-label": "Events committed per minute, last " + counts.length + " minutes"});
    root.append(
      svg("line", {x1: LEFT, y1: TOP + plotHeight, x2: WIDTH - RIGHT, y2: TOP + plotHeight,
        class: "axis"}),
      svg("line", {x1: LEFT, y1: TOP, x2: WIDTH - RIGHT, y2: TOP, class: "grid"}),
      svg("text", {x: LEFT - 6, y: TOP + 4, class: "label end"}, count(most)),
      svg("text", {x: LEFT - 6, y: TOP + plotHeight, class: "label end"}, "0"),
      svg("text", {x: LEFT, y: HEIGHT - 6, class: "label"}, clock(minutes.first)),
      svg("text", {x: LEFT + plotWidth / 2, y: HEIGHT - 6, class: "label middle"},
        clock(minutes.first + 30 * counts.length)),
      svg("text", {x: WIDTH - RIGHT, y: HEIGHT - 6, class: "label end"}, "now"));
    counts.forEach((value, i) => {
      const height = (value / most) * plotHeight;
      const bar = svg("rect", {x: (LEFT + i * step + 0.5).toFixed(1),
        y: (TOP + plotHeight - height).toFixed(1), width: Math.max(1, step - 1).toFixed(1),
        height: height.toFixed(1), class: "bar", "data-count": value});
      bar.append(svg("title", {}, clock(minutes.first + 60 * i) + ": " + count(value) + " events"));
      root.append(bar);
    });
    return root;
  }

  function summary(d, now) {
    const items = [
      ["Last seen", ago(now - d.last_seen)], ["First seen", ago(now - d.first_seen)],
      ["Lag", duration(d.lag)], ["Backlog age", duration(d.backlog_age)],
      ["Clock skew", duration(d.clock_skew)], ["Events", count(d.events)],
      ["Duplicates dropped", count(d.duplicates)],
      ["Gaps", count(d.gaps) + " (" + count(d.lost) + " events lost)"],
      ["Rejected batches", count(d.rejected)], ["Last refusal", d.last_rejection || "-"],
      ["Latest epoch", d.last_epoch || "-"], ["Streams", count(d.streams)],
    ];
    return items.flatMap(([term, value]) => [el("dt", {}, term),
      el("dd", {"data-field": term.toLowerCase().replace(/ /g, "_")}, value)]);
  }

  function streamRows(streams, now) {
    return streams.map((s) => el("tr", {},
      el("td", {}, s.stream), el("td", {class: "mono"}, s.epoch),
      el("td", {class: "num"}, count(s.upto_seq)), el("td", {class: "num"}, count(s.events)),
      el("td", {class: "num"}, count(s.duplicates)), el("td", {class: "num"}, count(s.lost)),
      el("td", {class: "num"}, duration(s.backlog_age)),
      el("td", {class: "num"}, ago(now - s.updated_at))));
  }

  function gapRows(gaps, now) {
    return gaps.map((g) => el("tr", {},
      el("td", {}, g.stream), el("td", {class: "num"}, g.first_seq + "-" + g.last_seq),
      el("td", {class: "num"}, count(g.last_seq - g.first_seq + 1)), el("td", {}, g.reason),
      el("td", {class: "num"}, ago(now - g.recorded_at))));
  }

  function render(view) {
    const d = view.device;
    document.getElementById("summary").replaceChildren(...summary(d, view.now));
    const place = document.getElementById("chart");
    place.replaceChildren(view.minutes ? chart(view.minutes) :
      el("p", {class: "muted"}, "This store does not keep events per minute."));
    header(document.querySelector("#streams thead tr"), [["Stream"], ["Epoch"],
      ["Up to seq", null, true], ["Events", null, true], ["Duplicates", null, true],
      ["Lost", null, true], ["Backlog age", null, true], ["Updated", null, true]]);
    document.querySelector("#streams tbody").replaceChildren(...streamRows(view.streams, view.now));
    header(document.querySelector("#gaps thead tr"), [["Stream"], ["Seqs", null, true],
      ["Events", null, true], ["Reason"], ["Recorded", null, true]]);
    document.querySelector("#gaps tbody").replaceChildren(...gapRows(view.gaps, view.now));
    document.getElementById("gaps").hidden = !view.gaps.length;
    document.getElementById("gaps-none").hidden = view.gaps.length > 0;
    show("note", view.note);
    document.getElementById("detail").hidden = false;
  }

  async function refresh() {
    try {
      render(await getJson("/api/device?id=" + encodeURIComponent(device)));
    } catch (error) {
      if (error.status !== 404 && error.status !== 400) throw error;
      document.getElementById("detail").hidden = true;
      show("note", error.status === 404 ? "The hub knows no device of this id." :
        "No device id given: open this page from the fleet table.");
    }
  }

  document.getElementById("title").textContent = device || "Device";
  document.title = "edgestream " + device;
  every(refresh);
})();
