/*
 * Flowmesh dashboard: polls GET /cluster and renders it. Vanilla JS, no build step.
 *
 * Every string from the server (node ids are data) reaches the DOM through
 * textContent, setAttribute or dataset only, never through innerHTML: the browser
 * escapes it. Elements carry stable ids and data attributes for tests and scripts:
 *   #node-rows tr[data-node-id]            one per node (data-coordinator="true" on the coordinator)
 *   #partitions [data-partition]           one cell per partition (data-primary, data-replicas: JSON array)
 *   #handoffs li[data-handoff]             one per handoff under way (data-partition, data-from, data-to, data-progress)
 *   #under-replicated [data-partition]     partitions with fewer than R copies
 *   body[data-epoch], body[data-polls]     what the last successful poll showed
 * The page polls every second (`?interval=ms` changes that, 250 ms at least).
 *
 * A gateway with API tokens answers 401 without one: the page then shows #token-form,
 * asks for a token with the `read` scope, keeps it in sessionStorage (this tab only) and
 * sends it as `Authorization: Bearer` on every poll. Polling waits while the form is shown.
 */
"use strict";

(function () {
  // Every second; `?interval=ms` (250 to 60000) changes it, e.g. for a closer look at a rebalance.
  var POLL_MS = (function () {
    var asked = Number(new URLSearchParams(window.location.search).get("interval"));
    return asked > 0 ? Math.min(60000, Math.max(250, Math.round(asked))) : 1000;
  })();
  var TIMEOUT_MS = 5000;
  var waitingForToken = false;

  // Distinct, light colours (dark text stays readable on them); then golden-angle hues.
  var PALETTE = ["#8ecae6", "#ffb703", "#90be6d", "#f4978e", "#cdb4db", "#f9c74f", "#80ed99", "#a2d2ff", "#ffafcc", "#e9c46a", "#b5e48c", "#bde0fe"];
  var colours = new Map(); // nodeID -> colour, assigned on first sight and kept for the page's life

  var previous = null; // { at: ms, ingested: Map(nodeID -> records) } from the last poll
  var selected = null; // nodeID whose partitions are highlighted
  var polls = 0;
  var lastOk = 0;
  var cells = []; // partition grid cells, reused across polls

  var numberFormat = new Intl.NumberFormat("en-US");
  var rateFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function $(id) {
    return document.getElementById(id);
  }

  /** An element with text content (escaped by the DOM) and attributes set one by one. */
  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, String(attrs[k]));
      });
    }
    return e;
  }

  /** Replace an element's children (a fragment: fine for thousands of partitions). */
  function fill(parent, children) {
    var fragment = document.createDocumentFragment();
    children.forEach(function (c) {
      fragment.appendChild(c);
    });
    parent.replaceChildren(fragment);
  }

  function setText(id, text) {
    var e = $(id);
    var s = String(text);
    if (e.textContent !== s) e.textContent = s;
  }

  function colourOf(nodeID) {
    if (nodeID === null || nodeID === undefined) return "#dddddd";
    var c = colours.get(nodeID);
    if (!c) {
      var i = colours.size;
      c = i < PALETTE.length ? PALETTE[i] : "hsl(" + Math.round((i * 137.508) % 360) + ", 70%, 78%)";
      colours.set(nodeID, c);
    }
    return c;
  }

  function fmt(n) {
    return typeof n === "number" && isFinite(n) ? numberFormat.format(n) : "–";
  }

  function seconds(ms) {
    return (Math.max(0, ms) / 1000).toFixed(1) + " s";
  }

  /** Records/s per node from the difference of two polls of the cumulative `recordsIngested`. */
  function ingestRates(status, now) {
    var rates = new Map();
    var current = new Map();
    (status.nodes || []).forEach(function (n) {
      if (typeof n.recordsIngested === "number") current.set(n.nodeID, n.recordsIngested);
    });
    if (previous && now > previous.at) {
      var dt = (now - previous.at) / 1000;
      current.forEach(function (records, nodeID) {
        var before = previous.ingested.get(nodeID);
        // A node new since the last poll, or restarted (its counter went back), has no rate yet.
        if (before !== undefined && records >= before) rates.set(nodeID, (records - before) / dt);
      });
    }
    previous = { at: now, ingested: current };
    return rates;
  }

  /** Every node in the stats or in the placement (a node whose stats did not answer still owns partitions). */
  function nodeList(status) {
    var byId = new Map();
    (status.nodes || []).forEach(function (n) {
      byId.set(n.nodeID, n);
    });
    (status.partitions || []).forEach(function (p) {
      [p.primary].concat(p.replicas || []).forEach(function (id) {
        if (id !== null && id !== undefined && !byId.has(id)) byId.set(id, { nodeID: id, missing: true });
      });
    });
    var list = Array.from(byId.values());
    list.sort(function (a, b) {
      return a.nodeID < b.nodeID ? -1 : a.nodeID > b.nodeID ? 1 : 0;
    });
    list.forEach(function (n) {
      colourOf(n.nodeID);
    });
    return list;
  }

  function renderSummary(status, nodes, rates) {
    var mode = $("mode");
    mode.textContent = String(status.mode);
    mode.dataset.mode = String(status.mode);
    setText("epoch", status.epoch);
    setText("coordinator", status.coordinator === null || status.coordinator === undefined ? "none" : status.coordinator);
    setText("node-count", nodes.length);
    setText("partition-count", fmt(status.partitionCount));
    setText("replica-count", status.replicas);
    var flows = 0;
    (status.partitions || []).forEach(function (p) {
      flows += p.flows || 0;
    });
    setText("total-flows", fmt(flows));
    var total = null;
    rates.forEach(function (r) {
      total = (total || 0) + r;
    });
    setText("total-rate", total === null ? "–" : rateFormat.format(total) + " records/s");
    setText("served-by", status.nodeID);
    document.body.dataset.epoch = String(status.epoch);
    document.body.dataset.mode = String(status.mode);
  }

  function renderNodes(status, nodes, rates) {
    var receiving = new Map();
    var sending = new Map();
    (status.handoffs || []).forEach(function (h) {
      receiving.set(h.to, (receiving.get(h.to) || 0) + 1);
      sending.set(h.from, (sending.get(h.from) || 0) + 1);
    });
    var rows = nodes.map(function (n) {
      var tr = el("tr", null, { "data-node-id": n.nodeID });
      var isCoordinator = n.nodeID === status.coordinator;
      if (isCoordinator) tr.dataset.coordinator = "true";
      if (n.missing) tr.classList.add("missing");
      if (n.nodeID === selected) tr.classList.add("selected");

      var name = el("td", null, { class: "node" });
      var swatch = el("span", null, { class: "swatch", "aria-hidden": "true" });
      swatch.style.setProperty("--node-colour", colourOf(n.nodeID));
      name.appendChild(swatch);
      name.appendChild(el("span", n.nodeID, { class: "node-id" }));
      if (isCoordinator) name.appendChild(el("span", "coordinator", { class: "badge coordinator", title: "publishes the placement table" }));
      if (n.nodeID === status.nodeID) name.appendChild(el("span", "this gateway", { class: "badge self" }));
      if (receiving.has(n.nodeID)) name.appendChild(el("span", "receiving " + receiving.get(n.nodeID), { class: "badge moving", title: "partition copies under way to this node" }));
      if (sending.has(n.nodeID)) name.appendChild(el("span", "sending " + sending.get(n.nodeID), { class: "badge moving", title: "partition copies under way from this node" }));
      if (n.missing) name.appendChild(el("span", "no stats", { class: "badge warn", title: "owns partitions but did not answer flow-shard.stats" }));
      tr.appendChild(name);

      var rate = rates.get(n.nodeID);
      [
        ["primaries", n.primaries],
        ["replicas", n.replicas],
        ["flows", n.flows],
        ["primary-flows", n.primaryFlows],
        ["rate", rate === undefined ? undefined : Math.round(rate)],
      ].forEach(function (c) {
        tr.appendChild(el("td", fmt(c[1]), { class: "num", "data-field": c[0] }));
      });
      tr.addEventListener("click", function () {
        selected = selected === n.nodeID ? null : n.nodeID;
        Array.prototype.forEach.call($("node-rows").children, function (row) {
          row.classList.toggle("selected", row.dataset.nodeId === selected);
        });
        highlight(lastStatus);
      });
      return tr;
    });
    fill($("node-rows"), rows);

    fill(
      $("legend"),
      nodes.map(function (n) {
        var item = el("span", null, { class: "legend-item", "data-node-id": n.nodeID });
        var swatch = el("span", null, { class: "swatch", "aria-hidden": "true" });
        swatch.style.setProperty("--node-colour", colourOf(n.nodeID));
        item.appendChild(swatch);
        item.appendChild(el("span", n.nodeID));
        return item;
      }),
    );
  }

  function describePartition(p, moving) {
    var text = "partition " + p.partition + " · primary " + (p.primary === null ? "none" : p.primary);
    text += " · replicas " + ((p.replicas || []).length ? p.replicas.join(", ") : "none");
    text += " · " + fmt(p.flows) + " flows";
    if (moving) text += " · copying to " + moving;
    return text;
  }

  function renderPartitions(status) {
    var grid = $("partitions");
    var parts = status.partitions || [];
    if (cells.length !== parts.length) {
      cells = parts.map(function (_, i) {
        var cell = el("div", String(i), { class: "cell", "data-partition": i });
        cell.addEventListener("mouseenter", function () {
          $("partition-detail").textContent = cell.title;
        });
        return cell;
      });
      fill(grid, cells);
    }
    var moving = new Map();
    (status.handoffs || []).forEach(function (h) {
      var to = moving.get(h.partition);
      moving.set(h.partition, to ? to + ", " + h.to : h.to);
    });
    var under = new Set(status.underReplicated || []);
    parts.forEach(function (p, i) {
      var cell = cells[i];
      var primary = p.primary === null || p.primary === undefined ? "" : String(p.primary);
      if (cell.dataset.primary !== primary) {
        cell.dataset.primary = primary;
        cell.style.setProperty("--node-colour", colourOf(p.primary));
      }
      var replicas = JSON.stringify(p.replicas || []);
      if (cell.dataset.replicas !== replicas) cell.dataset.replicas = replicas;
      cell.dataset.flows = String(p.flows || 0);
      cell.classList.toggle("orphan", primary === "");
      cell.classList.toggle("under", under.has(p.partition));
      cell.classList.toggle("moving", moving.has(p.partition));
      var title = describePartition(p, moving.get(p.partition));
      if (cell.title !== title) cell.title = title;
    });
    highlight(status);
  }

  /** The second view: with a node selected, its primaries are filled, its replicas outlined, the rest dimmed. */
  function highlight(status) {
    if (!status) return;
    var grid = $("partitions");
    grid.classList.toggle("focus", selected !== null);
    (status.partitions || []).forEach(function (p, i) {
      var cell = cells[i];
      if (!cell) return;
      cell.classList.toggle("is-primary", selected !== null && p.primary === selected);
      cell.classList.toggle("is-replica", selected !== null && (p.replicas || []).indexOf(selected) >= 0);
    });
  }

  function renderHandoffs(status, now) {
    var list = (status.handoffs || []).slice().sort(function (a, b) {
      return a.partition - b.partition || (a.to < b.to ? -1 : a.to > b.to ? 1 : 0);
    });
    setText("handoff-count", list.length);
    $("handoffs-empty").hidden = list.length > 0;
    var items = list.map(function (h) {
      var progress = typeof h.progress === "number" ? Math.max(0, Math.min(1, h.progress)) : h.chunks ? h.sent / h.chunks : 0;
      var li = el("li", null, {
        "data-handoff": "",
        "data-partition": h.partition,
        "data-from": h.from,
        "data-to": h.to,
        "data-progress": progress,
      });
      var head = el("span", null, { class: "handoff-route" });
      head.appendChild(el("span", "P" + h.partition, { class: "handoff-partition" }));
      head.appendChild(document.createTextNode(" "));
      head.appendChild(el("span", h.from, { class: "handoff-from" }));
      head.appendChild(document.createTextNode(" → "));
      head.appendChild(el("span", h.to, { class: "handoff-to" }));
      li.appendChild(head);
      li.appendChild(el("progress", null, { max: 1, value: progress, "aria-label": "partition " + h.partition + " copied" }));
      var pct = Math.round(progress * 100);
      var elapsed = typeof h.startedAt === "number" ? " · " + seconds(now - h.startedAt) : "";
      li.appendChild(el("span", pct + "% · " + fmt(h.sent) + "/" + fmt(h.chunks) + " chunks · " + fmt(h.flows) + " flows" + elapsed, { class: "handoff-progress" }));
      return li;
    });
    fill($("handoffs"), items);
  }

  function renderUnder(status) {
    var under = (status.underReplicated || []).slice().sort(function (a, b) {
      return a - b;
    });
    setText("under-count", under.length);
    var box = $("under-replicated");
    if (under.length === 0) {
      box.replaceChildren(document.createTextNode("None."));
      box.classList.add("muted");
      return;
    }
    box.classList.remove("muted");
    fill(
      box,
      under.map(function (p) {
        return el("span", "P" + p, { class: "chip", "data-partition": p });
      }),
    );
  }

  var lastStatus = null;

  function render(status, now) {
    var nodes = nodeList(status);
    var rates = ingestRates(status, now);
    renderSummary(status, nodes, rates);
    renderNodes(status, nodes, rates);
    renderPartitions(status);
    renderHandoffs(status, Date.now());
    renderUnder(status);
    lastStatus = status;
  }

  function setStatus(state, text) {
    var s = $("status");
    s.dataset.state = state;
    s.textContent = text;
  }

  /** 401/403 (public/api-token.js shows the token form): polling waits until a token is given. */
  function askForToken(httpStatus) {
    waitingForToken = true;
    window.flowmeshToken.ask(httpStatus, "GET /cluster", function () {
      waitingForToken = false;
      poll();
    });
  }

  function poll() {
    var started = Date.now();
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = controller ? setTimeout(function () { controller.abort(); }, TIMEOUT_MS) : null;
    var headers = window.flowmeshToken.headers("application/json");
    fetch("cluster", { cache: "no-store", headers: headers, signal: controller ? controller.signal : undefined })
      .then(function (res) {
        if (res.status === 401 || res.status === 403) {
          askForToken(res.status);
          return null;
        }
        if (!res.ok) throw new Error("GET /cluster answered " + res.status);
        return res.json();
      })
      .then(function (status) {
        if (status === null) return;
        var now = performance.now();
        render(status, now);
        polls++;
        lastOk = Date.now();
        document.body.dataset.polls = String(polls);
        setStatus("ok", "Live · refreshed every " + POLL_MS / 1000 + " s · last " + new Date(lastOk).toLocaleTimeString());
      })
      .catch(function (err) {
        var age = lastOk ? " · data shown is " + seconds(Date.now() - lastOk) + " old" : "";
        setStatus("error", "Cannot read /cluster (" + (err && err.message ? err.message : String(err)) + "), retrying" + age);
        document.body.classList.toggle("stale", lastOk > 0);
      })
      .then(function () {
        if (timer) clearTimeout(timer);
        if ($("status").dataset.state === "ok") document.body.classList.remove("stale");
        // The form's submit starts polling again.
        if (!waitingForToken) setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)));
      });
  }

  poll();
})();
