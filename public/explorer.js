/*
 * Flowmesh flows explorer: the top talkers of an hour or a range of hours, from
 * GET /flows/top, as a bar chart and a table, with the totals and a CSV download.
 * Vanilla JS, no build step.
 *
 * Every string from the server (app names, VPC ids are data) reaches the DOM through
 * textContent, setAttribute or dataset only, never through innerHTML: the browser escapes
 * it. Elements carry stable ids and data attributes for tests and scripts:
 *   #top-rows tr[data-rank]                one per top group (data-key: JSON of its `by` values),
 *                                          cells td[data-field] (src_app, bytes_total, flows, ...)
 *   #chart g.bar[data-rank]                one bar per top group, same order (data-label, data-value:
 *                                          the ranked metric)
 *   #total [data-field], #other [data-field]   the answer's `total` and `other`
 *   #csv-link                              href: this query's CSV (format=csv)
 *   body[data-query], body[data-loads]     the query string of the answer shown, answers shown so far
 * The page's own URL carries the query (?from=&to=&by=&metric=&n=...), so a view can be
 * reloaded or shared; without one it shows the last 24 hours up to the newest hour with data.
 *
 * A gateway with API tokens answers 401 without one: like the placement dashboard, the page
 * then shows #token-form, keeps the token in sessionStorage (same key, so one token serves
 * both pages in a tab) and sends it as `Authorization: Bearer`. A download link cannot send
 * that header, so with a token the CSV is fetched by script and saved from a blob.
 */
"use strict";

(function () {
  var TIMEOUT_MS = 30000; // a month-long range can take a while
  var DEFAULT_SPAN_HOURS = 24;
  var BY_FIELDS = ["src_app", "dest_app", "vpc_id"];
  var METRICS = ["bytes_total", "bytes_tx", "bytes_rx"];

  var numberFormat = new Intl.NumberFormat("en-US");
  var percentFormat = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1 });

  var hours = { newest: null, oldest: null }; // from GET /flows/hours
  var querySeq = 0; // answers to older queries than the newest are dropped
  var inFlight = null; // the AbortController of the query under way
  var loads = 0;

  function $(id) {
    return document.getElementById(id);
  }

  /** An element with text content (escaped by the DOM) and attributes set one by one. */
  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    setAttributes(e, attrs);
    return e;
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG_NS, tag);
    setAttributes(e, attrs);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setAttributes(e, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, String(attrs[k]));
    });
  }

  function fmt(n) {
    return typeof n === "number" && isFinite(n) ? numberFormat.format(n) : "–";
  }

  /** 1234567 → "1.23 MB" (SI units, as link speeds are counted), for bar labels; the table has the exact numbers. */
  function humanBytes(n) {
    if (typeof n !== "number" || !isFinite(n)) return "–";
    var units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    var i = 0;
    var v = n;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return (i === 0 ? String(v) : v.toPrecision(3)) + " " + units[i];
  }

  function isHour(h) {
    return typeof h === "number" && Number.isSafeInteger(h) && h >= 0;
  }

  /** Hour N is the hour starting N × 3600 s after the Unix epoch: "2026-11-27 15:00 UTC". */
  function utcOfHour(h) {
    if (!isHour(h)) return "–";
    var d = new Date(h * 3600 * 1000);
    if (isNaN(d.getTime())) return "beyond the calendar";
    return d.toISOString().slice(0, 13).replace("T", " ") + ":00 UTC";
  }

  /** "489000 (2025-10-14 00:00 UTC)" */
  function hourWithUtc(h) {
    return isHour(h) ? h + " (" + utcOfHour(h) + ")" : "–";
  }

  function setStatus(state, text) {
    var s = $("status");
    s.dataset.state = state;
    s.textContent = text;
  }

  // ---- the read token (public/api-token.js, shared with the dashboard) ----

  var storedToken = window.flowmeshToken.stored;
  var authHeaders = window.flowmeshToken.headers;
  var askForToken = window.flowmeshToken.ask;

  /** Thrown after a 401/403: the token form is shown (askForToken), and what it interrupted runs again once a token is given. */
  function NeedsToken() {}

  /** The server's own words for a refusal (its error JSON's message), else the status. */
  function failure(res, what) {
    return res.text().then(function (text) {
      var message = "";
      try {
        message = JSON.parse(text).message || "";
      } catch (e) {
        message = text.slice(0, 200);
      }
      return new Error(what + " answered " + res.status + (message ? ": " + message : ""));
    });
  }

  /** GET a JSON answer, with the token; a 401/403 asks for one and runs `resume` once given. */
  function getJson(path, resume, signal) {
    var what = "GET /" + path.split("?")[0];
    return fetch(path, { cache: "no-store", headers: authHeaders("application/json"), signal: signal }).then(function (res) {
      if (res.status === 401 || res.status === 403) {
        askForToken(res.status, what, resume);
        throw new NeedsToken();
      }
      if (!res.ok) return failure(res, what).then(function (err) { throw err; });
      return res.json();
    });
  }

  // ---- the query: form ⇄ URL ⇄ API parameters ----

  function intOrNull(text) {
    return /^\s*\d+\s*$/.test(String(text)) ? Number(text) : null;
  }

  function readForm() {
    return {
      from: intOrNull($("from").value),
      to: intOrNull($("to").value),
      by: $("by").value,
      metric: $("metric").value,
      n: intOrNull($("n").value),
      filters: BY_FIELDS.map(function (f) {
        return [f, $("filter-" + f).value];
      }).filter(function (pair) {
        return pair[1] !== "";
      }),
    };
  }

  /** What is wrong with a query before asking the server, or null. */
  function problemWith(q) {
    if (q.from === null || q.to === null) return "Enter the first and last hour (whole numbers, 0 or more).";
    if (q.from > q.to) return "The first hour is after the last one.";
    if (q.n === null || q.n < 1 || q.n > 1000) return "top n is a whole number from 1 to 1000.";
    return null;
  }

  /** The hours part: `hour=N` for one hour, else `from=A&to=B` (both inclusive). */
  function hoursParams(q) {
    return q.from === q.to ? [["hour", q.from]] : [["from", q.from], ["to", q.to]];
  }

  function topParams(q) {
    return hoursParams(q).concat([["by", q.by], ["metric", q.metric], ["n", q.n]], q.filters);
  }

  function encode(pairs) {
    var p = new URLSearchParams();
    pairs.forEach(function (pair) {
      p.append(pair[0], String(pair[1]));
    });
    return p.toString();
  }

  /** A query given in the page's URL (a reload, a shared link), over the defaults; `from`/`to` null when absent. */
  function applyUrlToForm() {
    var p = new URLSearchParams(window.location.search);
    var hour = intOrNull(p.get("hour") || "");
    var from = hour !== null ? hour : intOrNull(p.get("from") || "");
    var to = hour !== null ? hour : intOrNull(p.get("to") || "");
    if (from !== null && to !== null) {
      $("from").value = String(from);
      $("to").value = String(to);
    }
    var by = p.get("by");
    if (by && optionExists("by", by)) $("by").value = by;
    var metric = p.get("metric");
    if (metric && METRICS.indexOf(metric) >= 0) $("metric").value = metric;
    var n = intOrNull(p.get("n") || "");
    if (n !== null) $("n").value = String(n);
    BY_FIELDS.forEach(function (f) {
      if (p.has(f)) $("filter-" + f).value = p.get(f);
    });
    return from !== null && to !== null;
  }

  function optionExists(selectId, value) {
    return Array.prototype.some.call($(selectId).options, function (o) {
      return o.value === value;
    });
  }

  function showUtcOfInputs() {
    $("from-utc").textContent = utcOfHour(intOrNull($("from").value));
    $("to-utc").textContent = utcOfHour(intOrNull($("to").value));
  }

  function setRange(from, to) {
    $("from").value = String(from);
    $("to").value = String(to);
    showUtcOfInputs();
  }

  // ---- loading ----

  function loadHours() {
    return getJson("flows/hours", start).then(function (answer) {
      hours = { newest: isHour(answer.newest) ? answer.newest : null, oldest: isHour(answer.oldest) ? answer.oldest : null };
      $("data-hours").textContent =
        hours.newest === null
          ? "No flows stored yet."
          : "Hours with data: " + hourWithUtc(hours.oldest) + " to " + hourWithUtc(hours.newest) + ".";
      return hours;
    });
  }

  /** The default range: the last 24 hours, ending at the newest hour that has data. */
  function lastDay() {
    setRange(Math.max(0, hours.newest - (DEFAULT_SPAN_HOURS - 1)), hours.newest);
  }

  function start() {
    var fromUrl = applyUrlToForm();
    showUtcOfInputs();
    loadHours()
      .then(function () {
        if (!fromUrl) {
          if (hours.newest === null) {
            setStatus("ok", "No flows stored yet: nothing to rank.");
            return;
          }
          lastDay();
        }
        runQuery();
      })
      .catch(showError);
  }

  function showError(err) {
    if (err instanceof NeedsToken) return;
    if (err && err.name === "AbortError") return; // replaced by a newer query
    setStatus("error", err && err.message ? err.message : String(err));
  }

  function runQuery() {
    var q = readForm();
    var problem = problemWith(q);
    if (problem) {
      setStatus("error", problem);
      return;
    }
    var qs = encode(topParams(q));
    updateDownloadLinks(q, qs);
    // The page's URL follows the query, so a reload or a shared link shows the same view.
    if (window.location.search !== "?" + qs) window.history.replaceState(null, "", "?" + qs);

    var seq = ++querySeq;
    if (inFlight) inFlight.abort();
    var controller = new AbortController();
    inFlight = controller;
    var timer = setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    var started = Date.now();
    setStatus("loading", "Asking GET /flows/top…");
    document.body.classList.add("loading");
    getJson("flows/top?" + qs, runQuery, controller.signal)
      .then(function (answer) {
        if (seq !== querySeq) return;
        render(answer, q, qs);
        setStatus("ok", "Top " + (answer.top || []).length + " of " + fmt(answer.total && answer.total.groups) + " groups · answered in " + (Date.now() - started) + " ms");
      })
      .catch(function (err) {
        if (seq !== querySeq) return;
        if (err && err.name === "AbortError" && Date.now() - started >= TIMEOUT_MS) err = new Error("GET /flows/top did not answer within " + TIMEOUT_MS / 1000 + " s");
        showError(err);
      })
      .then(function () {
        clearTimeout(timer);
        if (seq === querySeq) {
          inFlight = null;
          document.body.classList.remove("loading");
        }
      });
  }

  // ---- downloads ----

  // The file names are the gateway's (Content-Disposition), for a followed link and a saved blob alike.
  function updateDownloadLinks(q, qs) {
    $("csv-link").setAttribute("href", "flows/top?" + qs + "&format=csv");
    $("flows-csv-link").setAttribute("href", "flows?" + encode(hoursParams(q).concat(q.filters, [["format", "csv"]])));
  }

  function fileNameOf(res) {
    var m = /filename="([^"]+)"/.exec(res.headers.get("content-disposition") || "");
    return m ? m[1] : "flowmesh.csv";
  }

  /** With a token, a plain link would be refused (it cannot send the header): fetch it and save the blob. */
  function downloadWithToken(event) {
    var link = event.currentTarget;
    if (!storedToken()) return; // the browser follows the link itself
    event.preventDefault();
    var href = link.getAttribute("href");
    var what = "GET /" + href.split("?")[0];
    fetch(href, { cache: "no-store", headers: authHeaders("text/csv") })
      .then(function (res) {
        if (res.status === 401 || res.status === 403) {
          askForToken(res.status, what, function () { link.click(); });
          throw new NeedsToken();
        }
        if (!res.ok) return failure(res, what).then(function (err) { throw err; });
        var name = fileNameOf(res);
        return res.blob().then(function (blob) {
          return { blob: blob, name: name };
        });
      })
      .then(function (file) {
        var url = URL.createObjectURL(file.blob);
        var save = el("a", null, { href: url, download: file.name, hidden: "" });
        document.body.appendChild(save);
        save.click();
        save.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
      })
      .catch(showError);
  }

  // ---- rendering ----

  /** "web → db · vpc-1": the group's `by` values, source to destination. */
  function labelOf(row, by) {
    var flow = [];
    if (by.indexOf("src_app") >= 0) flow.push(String(row.src_app));
    if (by.indexOf("dest_app") >= 0) flow.push(String(row.dest_app));
    var parts = flow.length ? [flow.join(" → ")] : [];
    if (by.indexOf("vpc_id") >= 0) parts.push(String(row.vpc_id));
    return parts.join(" · ");
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function render(answer, q, qs) {
    var by = Array.isArray(answer.by) ? answer.by : String(answer.by || q.by).split(",");
    var metric = METRICS.indexOf(answer.metric) >= 0 ? answer.metric : q.metric;
    var top = Array.isArray(answer.top) ? answer.top : [];
    var from = isHour(answer.from) ? answer.from : q.from;
    var to = isHour(answer.to) ? answer.to : q.to;

    $("result-range").textContent =
      from === to
        ? "· hour " + hourWithUtc(from)
        : "· hours " + hourWithUtc(from) + " to " + hourWithUtc(to) + ", " + (to - from + 1) + " hours";
    renderTotals("total", answer.total);
    renderTotals("other", answer.other);
    $("empty").hidden = top.length > 0;
    renderChart(top, by, metric);
    renderTable(top, by, metric, answer.total);

    loads++;
    document.body.dataset.query = qs;
    document.body.dataset.loads = String(loads);
  }

  function renderTotals(id, sums) {
    var box = $(id);
    ["bytes_total", "bytes_tx", "bytes_rx", "flows", "groups"].forEach(function (f) {
      box.querySelector('[data-field="' + f + '"]').textContent = fmt(sums ? sums[f] : undefined);
    });
  }

  /** Horizontal bars, longest first; with bytes_total ranked, each bar is split into its tx and rx parts. */
  function renderChart(top, by, metric) {
    var box = $("chart");
    if (top.length === 0) {
      box.replaceChildren();
      return;
    }
    var WIDTH = 960;
    var LABEL_WIDTH = 300;
    var VALUE_WIDTH = 90;
    var ROW = 26;
    var BAR = 18;
    var barSpace = WIDTH - LABEL_WIDTH - VALUE_WIDTH - 16;
    var max = top.reduce(function (m, row) { return Math.max(m, Number(row[metric]) || 0); }, 0);
    var scale = max > 0 ? barSpace / max : 0;

    var chart = svg("svg", {
      viewBox: "0 0 " + WIDTH + " " + (top.length * ROW + 24),
      role: "img",
      "aria-label": "top " + top.length + " by " + metric,
      class: "bars",
    });
    top.forEach(function (row, i) {
      var label = labelOf(row, by);
      var value = Number(row[metric]) || 0;
      var y = i * ROW + 4;
      var g = svg("g", { class: "bar", "data-rank": i + 1, "data-label": label, "data-value": value });
      g.appendChild(svg("title", null, label + ": " + fmt(value) + " bytes (" + metric + "; tx " + fmt(row.bytes_tx) + ", rx " + fmt(row.bytes_rx) + ") in " + fmt(row.flows) + " flows"));
      g.appendChild(svg("text", { class: "label", x: LABEL_WIDTH - 8, y: y + BAR / 2, "text-anchor": "end", "dominant-baseline": "central" }, shorten(label, 38)));
      var parts = metric === "bytes_total" ? [["tx", row.bytes_tx], ["rx", row.bytes_rx]] : [[metric === "bytes_tx" ? "tx" : "rx", value]];
      var x = LABEL_WIDTH;
      parts.forEach(function (part) {
        var w = (Number(part[1]) || 0) * scale;
        g.appendChild(svg("rect", { class: "part " + part[0], x: x.toFixed(2), y: y, width: w.toFixed(2), height: BAR, rx: 2 }));
        x += w;
      });
      g.appendChild(svg("text", { class: "value", x: x + 6, y: y + BAR / 2, "dominant-baseline": "central" }, humanBytes(value)));
      chart.appendChild(g);
    });
    // A legend under the bars: which colour is which direction.
    var legendY = top.length * ROW + 14;
    var legend = svg("g", { class: "legend" });
    var shown = metric === "bytes_total" ? ["tx", "rx"] : [metric === "bytes_tx" ? "tx" : "rx"];
    shown.forEach(function (part, i) {
      var lx = LABEL_WIDTH + i * 120;
      legend.appendChild(svg("rect", { class: "part " + part, x: lx, y: legendY - 5, width: 10, height: 10, rx: 2 }));
      legend.appendChild(svg("text", { x: lx + 16, y: legendY, "dominant-baseline": "central" }, "bytes_" + part));
    });
    chart.appendChild(legend);
    box.replaceChildren(chart);
  }

  function renderTable(top, by, metric, total) {
    var columns = by.concat(["bytes_tx", "bytes_rx", "bytes_total", "flows"]);
    var head = [el("th", "#", { scope: "col", class: "num" })].concat(
      columns.map(function (c) {
        var numeric = by.indexOf(c) < 0;
        return el("th", c, { scope: "col", class: (numeric ? "num" : "") + (c === metric ? " ranked" : "") });
      }),
      [el("th", "share of " + metric, { scope: "col", class: "num" })],
    );
    $("top-head").replaceChildren.apply($("top-head"), head);

    var all = total && Number(total[metric]) > 0 ? Number(total[metric]) : 0;
    var rows = top.map(function (row, i) {
      var key = by.map(function (f) { return row[f]; });
      var tr = el("tr", null, { "data-rank": i + 1, "data-key": JSON.stringify(key) });
      tr.appendChild(el("td", i + 1, { class: "num", "data-field": "rank" }));
      columns.forEach(function (c) {
        var numeric = by.indexOf(c) < 0;
        tr.appendChild(el("td", numeric ? fmt(row[c]) : row[c], { class: numeric ? "num" + (c === metric ? " ranked" : "") : "key", "data-field": c }));
      });
      tr.appendChild(el("td", all ? percentFormat.format((Number(row[metric]) || 0) / all) : "–", { class: "num", "data-field": "share" }));
      return tr;
    });
    $("top-rows").replaceChildren.apply($("top-rows"), rows);
  }

  // ---- wiring ----

  $("query-form").addEventListener("submit", function (event) {
    event.preventDefault();
    runQuery();
  });
  // Choices that change the ranking run it at once; typed hours and filters wait for Show (or Enter).
  ["by", "metric"].forEach(function (id) {
    $(id).addEventListener("change", runQuery);
  });
  ["from", "to"].forEach(function (id) {
    $(id).addEventListener("input", showUtcOfInputs);
  });
  $("preset-day").addEventListener("click", function () {
    loadHours()
      .then(function () {
        if (hours.newest === null) return setStatus("ok", "No flows stored yet: nothing to rank.");
        lastDay();
        runQuery();
      })
      .catch(showError);
  });
  $("preset-hour").addEventListener("click", function () {
    loadHours()
      .then(function () {
        if (hours.newest === null) return setStatus("ok", "No flows stored yet: nothing to rank.");
        setRange(hours.newest, hours.newest);
        runQuery();
      })
      .catch(showError);
  });
  $("csv-link").addEventListener("click", downloadWithToken);
  $("flows-csv-link").addEventListener("click", downloadWithToken);

  start();
})();
