// The fleet table: one row per device, from /api/fleet, refreshed every few seconds.
"use strict";

(() => {
  const {el, duration, ago, count, deviceLink, header, show, getJson, every} = Fleet;
  const STALE_SECONDS = 15 * 60;

  // Every column the hub may offer; /api/fleet says which ones its store keeps.
  const COLUMNS = {
    device: ["Device", "The device id (its uplink topic)", (d) => deviceLink(d.device)],
    last_seen: ["Last seen", "Since the hub last committed or refused a batch of the device",
      (d, now) => ago(now - d.last_seen)],
    lag: ["Lag", "Now minus the newest event time committed for the device",
      (d) => duration(d.lag)],
    backlog_age: ["Backlog age", "Age of the oldest unsent event on the device when it sent its last batch",
      (d) => duration(d.backlog_age)],
    gaps: ["Gaps", "Ranges of events the device dropped before upload (events lost in brackets)",
      (d) => d.gaps ? count(d.gaps) + " (" + count(d.lost) + ")" : "0"],
    clock_skew: ["Clock skew", "Device clock minus hub clock (negative: the device is behind)",
      (d) => duration(d.clock_skew)],
    rejected: ["Rejected", "Batches of the device the hub refused", (d) => count(d.rejected)],
    last_rejection: ["Last refusal", "Why the hub refused the device's last refused batch",
      (d) => d.last_rejection || ""],
    duplicates: ["Duplicates", "Events received again and dropped by the store",
      (d) => count(d.duplicates)],
    events: ["Events", "Events committed for the device", (d) => count(d.events)],
  };
  const NUMERIC = new Set(["last_seen", "lag", "backlog_age", "gaps", "clock_skew",
    "rejected", "duplicates", "events"]);

  function cell(name, device, now) {
    const [, , render] = COLUMNS[name];
    const td = el("td", {"data-col": name}, render(device, now));
    if (NUMERIC.has(name)) td.classList.add("num");
    if (name === "last_rejection" && device.last_rejection) {
      td.title = device.last_rejection;
      td.classList.add("reason");
    }
    if ((name === "rejected" && device.rejected > 0) || (name === "gaps" && device.gaps > 0)) {
      td.classList.add("warn");
    }
    if (name === "last_seen" && now - device.last_seen > STALE_SECONDS) td.classList.add("warn");
    return td;
  }

  function row(device, columns, now) {
    return el("tr", {"data-device": device.device},
      ...columns.map((name) => cell(name, device, now)));
  }

  function hubLine(view) {
    const hub = view.hub;
    const refused = Object.entries(hub.rejected_by).map(([k, v]) => k + " " + v).join(", ");
    return "Hub id " + hub.hub_id + (hub.connected ? ", connected" : ", NOT connected to the broker") +
      ", since start: " + count(hub.batches) + " batches, " + count(hub.events) + " events, " +
      count(hub.duplicates) + " duplicates dropped, " + count(hub.rejected) + " batches refused" +
      (refused ? " (" + refused + ")" : "") + ". Store: " + view.store + ".";
  }

  async function refresh() {
    const view = await getJson("/api/fleet");
    const columns = view.columns.filter((name) => name in COLUMNS);
    header(document.querySelector("#fleet thead tr"),
      columns.map((n) => [COLUMNS[n][0], COLUMNS[n][1], NUMERIC.has(n)]));
    const rows = view.devices.map((d) => row(d, columns, view.now));
    if (!rows.length) {
      rows.push(el("tr", {}, el("td", {colspan: columns.length, class: "muted"},
        "No device has sent anything yet.")));
    }
    document.querySelector("#fleet tbody").replaceChildren(...rows);
    document.getElementById("hub").textContent = hubLine(view);
    show("note", view.note);
    const shown = view.devices.length;
    document.getElementById("count").textContent = view.total > shown ?
      "Showing the first " + count(shown) + " of " + count(view.total) +
      " devices by id; open /device?id=NAME for any other." :
      count(view.total) + (view.total === 1 ? " device." : " devices.");
  }

  every(refresh);
})();
