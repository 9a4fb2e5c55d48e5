"use strict";
// The monitoring page (templates/monitor.html): GET /stats with the admin token, drawn as
// numbers, SVG charts and tables. The token lives only in this tab's sessionStorage.

const TOKEN_KEY = "monitor.adminToken";
const SVG = "http://www.w3.org/2000/svg";
const DRIFT_THRESHOLD = 0.25; // PSI from which a column counts as drifted

const form = document.getElementById("stats-form");
const tokenInput = document.getElementById("token");
const windowChoice = document.getElementById("window");
const statusLine = document.getElementById("stats-status");
const dashboard = document.getElementById("dashboard");

// --- Small helpers -----------------------------------------------------------------------

function byId(id) {
  return document.getElementById(id);
}

function fixed(value, decimals) {
  return value === null || value === undefined ? "none" : value.toFixed(decimals);
}

function binLabel(bin) {
  return `${bin.low.toFixed(1)} to ${bin.high.toFixed(1)}`;
}

function say(message, isError = false) {
  statusLine.textContent = message;
  statusLine.className = isError ? "status-error" : "";
}

function svg(name, attributes = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function table(id, headers, rows) {
  const head = document.createElement("thead");
  const headRow = head.insertRow();
  for (const header of headers) {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = header;
    headRow.append(cell);
  }
  const body = document.createElement("tbody");
  for (const row of rows) {
    const tableRow = body.insertRow();
    row.forEach((value, index) => {
      const cell = tableRow.insertCell();
      cell.textContent = value;
      if (index > 0) cell.className = "number";
    });
  }
  byId(id).replaceChildren(head, body);
}

// --- Charts: a 320 x 240 drawing, scaled to the width of the page -------------------------

const FRAME = { left: 44, right: 310, top: 12, bottom: 196, width: 320, height: 240 };
const TENTHS = [0, 0.2, 0.4, 0.6, 0.8, 1];

function xOf(probability) {
  return FRAME.left + probability * (FRAME.right - FRAME.left);
}

function yOf(share) {
  return FRAME.bottom - share * (FRAME.bottom - FRAME.top);
}

function line(className, x1, y1, x2, y2) {
  return svg("line", { class: className, x1, y1, x2, y2 });
}

function label(x, y, text, anchor = "start", className = "") {
  return svg("text", { x, y, "text-anchor": anchor, class: className }, text);
}

// Probability from 0 to 1 across; up, a share from 0 to 1 with its tick labels.
function axes(chart, yTitle, yTicks) {
  for (const tick of TENTHS) {
    chart.append(line("grid", xOf(tick), FRAME.top, xOf(tick), FRAME.bottom));
    chart.append(label(xOf(tick), FRAME.bottom + 14, tick.toFixed(1), "middle"));
  }
  for (const [share, text] of yTicks) {
    chart.append(line("grid", FRAME.left, yOf(share), FRAME.right, yOf(share)));
    chart.append(label(FRAME.left - 4, yOf(share) + 4, text, "end"));
  }
  chart.append(line("axis", FRAME.left, FRAME.bottom, FRAME.right, FRAME.bottom));
  chart.append(line("axis", FRAME.left, FRAME.top, FRAME.left, FRAME.bottom));
  const middle = (FRAME.left + FRAME.right) / 2;
  chart.append(label(middle, FRAME.height - 8, "predicted probability", "middle"));
  const yTitleAt = (FRAME.top + FRAME.bottom) / 2;
  const title = label(12, yTitleAt, yTitle, "middle");
  title.setAttribute("transform", `rotate(-90 12 ${yTitleAt})`);
  chart.append(title);
}

function startChart(id, height = FRAME.height) {
  const chart = byId(id);
  chart.replaceChildren();
  chart.setAttribute("viewBox", `0 0 ${FRAME.width} ${height}`);
  return chart;
}

function noData(chart, message) {
  chart.append(label(FRAME.width / 2, FRAME.height / 2, message, "middle"));
}

function drawCalibration(bins) {
  const chart = startChart("calibration-chart");
  axes(chart, "observed share", TENTHS.map((share) => [share, share.toFixed(1)]));
  chart.append(svg("path", { class: "ideal", d: `M ${xOf(0)} ${yOf(0)} L ${xOf(1)} ${yOf(1)}` }));
  const points = bins.filter(
    (bin) => bin.count > 0 && bin.mean_proba !== null && bin.observed_rate !== null,
  );
  if (!points.length) {
    noData(chart, "No predictions with their outcome yet");
    return;
  }
  const path = points.map(
    (bin, i) => `${i ? "L" : "M"} ${xOf(bin.mean_proba)} ${yOf(bin.observed_rate)}`,
  );
  chart.append(svg("path", { class: "model-line", d: path.join(" ") }));
  for (const bin of points) {
    const point = svg("circle", {
      class: "point",
      cx: xOf(bin.mean_proba),
      cy: yOf(bin.observed_rate),
      r: 4,
    });
    const summary =
      `${binLabel(bin)}: ${bin.count} with outcome, mean predicted ` +
      `${fixed(bin.mean_proba, 3)}, observed ${fixed(bin.observed_rate, 3)}`;
    point.append(svg("title", {}, summary));
    chart.append(point);
  }
}

function drawDistribution(bins) {
  const chart = startChart("distribution-chart");
  const most = Math.max(0, ...bins.map((bin) => bin.count));
  axes(chart, "predictions", [[0, "0"], [1, String(most)]]);
  if (!most) {
    noData(chart, "No predictions in this window");
    return;
  }
  for (const bin of bins) {
    const top = yOf(bin.count / most);
    const bar = svg("rect", {
      class: "bar",
      x: xOf(bin.low) + 1,
      width: xOf(bin.high) - xOf(bin.low) - 2,
      y: top,
      height: FRAME.bottom - top,
    });
    bar.append(svg("title", {}, `${binLabel(bin)}: ${bin.count} predictions`));
    chart.append(bar);
    const middle = (xOf(bin.low) + xOf(bin.high)) / 2;
    chart.append(label(middle, top - 3, String(bin.count), "middle", "label-small"));
  }
}

// Hatching: a drifted column differs by its pattern and its words, not only its colour.
function hatching() {
  const pattern = svg("pattern", {
    id: "hatch",
    width: 6,
    height: 6,
    patternUnits: "userSpaceOnUse",
    patternTransform: "rotate(45)",
  });
  pattern.append(line("hatch-line", 0, 0, 0, 6));
  const definitions = svg("defs");
  definitions.append(pattern);
  return definitions;
}

// One bar per column, its name above it and its PSI after it; a dashed line at 0.25.
function drawDrift(columns) {
  const rowHeight = 34;
  const top = 22;
  const height = top + rowHeight * columns.length + 8;
  const chart = startChart("drift-chart", height);
  chart.append(hatching());
  const left = 8;
  const right = 240;
  const largest = Math.max(2 * DRIFT_THRESHOLD, ...columns.map(([, column]) => column.psi * 1.1));
  const xPsi = (psi) => left + (Math.min(psi, largest) / largest) * (right - left);

  columns.forEach(([name, column], row) => {
    const y = top + row * rowHeight;
    const drifted = column.psi >= DRIFT_THRESHOLD;
    chart.append(label(left, y + 11, name));
    const bar = svg("rect", {
      class: drifted ? "bar drifted" : "bar",
      x: left,
      y: y + 15,
      width: Math.max(1, xPsi(column.psi) - left),
      height: 12,
    });
    bar.append(svg("title", {}, `${name}: PSI ${fixed(column.psi, 3)}`));
    chart.append(bar);
    const psi = `${fixed(column.psi, 3)}${drifted ? " drifted" : ""}`;
    chart.append(label(xPsi(column.psi) + 4, y + 25, psi));
  });
  const x = xPsi(DRIFT_THRESHOLD);
  chart.append(line("threshold", x, top - 6, x, height - 4));
  chart.append(label(x, top - 9, String(DRIFT_THRESHOLD), "middle"));
}

// --- The page ----------------------------------------------------------------------------

function describeWindow(span) {
  if (!span.since && !span.until) return "All predictions stored.";
  return `Predictions made from ${span.since || "the first one"} to ${span.until || "now"} (UTC).`;
}

// What notebook 1 measured on rows kept out of training: the yardstick for the live numbers.
function showHeldOut(heldOut) {
  const sentence = byId("held-out");
  sentence.hidden = !heldOut || heldOut.roc_auc === undefined;
  if (sentence.hidden) return;
  sentence.textContent =
    `At training, on ${heldOut.rows} held-out rows: ROC AUC ${fixed(heldOut.roc_auc, 3)}, ` +
    `accuracy ${fixed(heldOut.accuracy, 3)}.`;
}

function showMetrics(metrics) {
  byId("metric-roc-auc").textContent = fixed(metrics.roc_auc, 3);
  byId("metric-accuracy").textContent = fixed(metrics.accuracy, 3);
  byId("metric-log-loss").textContent = fixed(metrics.log_loss, 3);
  byId("metric-brier").textContent = fixed(metrics.brier, 3);
  const reason = byId("metrics-reason");
  reason.hidden = !metrics.reason;
  reason.textContent = metrics.reason ? `No metrics: ${metrics.reason}` : "";
}

// [[column, drift], ...] in the model's column order (JSON objects may come sorted by name).
function inModelOrder(drift, modelColumns) {
  const rank = (name) =>
    modelColumns.includes(name) ? modelColumns.indexOf(name) : modelColumns.length;
  return Object.entries(drift).sort(([a], [b]) => rank(a) - rank(b));
}

function showDrift(drift, note, modelColumns) {
  byId("drift-note").hidden = drift !== null;
  byId("drift-note").textContent = note || "";
  byId("drift-figure").hidden = drift === null;
  byId("drift-details").hidden = drift === null;
  if (drift === null) return;
  const columns = inModelOrder(drift, modelColumns);
  drawDrift(columns);
  const shares = (bin) => `${bin.bin}: ${fixed(bin.training, 3)} → ${fixed(bin.window, 3)}`;
  const rows = columns.map(([name, column]) => [
    name,
    fixed(column.psi, 3),
    column.psi >= DRIFT_THRESHOLD ? "drifted" : "no",
    column.bins.map(shares).join("; "),
  ]);
  const headers = ["column", "PSI", "drifted", "share per bin: training → window"];
  table("drift-table", headers, rows);
}

function showStats(stats) {
  byId("window-text").textContent = `${describeWindow(stats.window)} Model ${stats.model.version}.`;
  byId("count-predictions").textContent = String(stats.predictions);
  byId("count-labelled").textContent = String(stats.labelled);
  byId("count-unreadable").textContent = String(stats.unreadable_observations);
  showMetrics(stats.metrics);
  showHeldOut(stats.model.held_out);
  drawCalibration(stats.calibration);
  table(
    "calibration-table",
    ["probability", "with outcome", "mean predicted", "observed share"],
    stats.calibration.map((bin) => [
      binLabel(bin),
      String(bin.count),
      fixed(bin.mean_proba, 3),
      fixed(bin.observed_rate, 3),
    ]),
  );
  drawDistribution(stats.distribution);
  table(
    "distribution-table",
    ["probability", "predictions"],
    stats.distribution.map((bin) => [binLabel(bin), String(bin.count)]),
  );
  showDrift(stats.drift, stats.drift_note, stats.model.columns);
  dashboard.hidden = false;
}

function statsUrl() {
  const url = new URL("/stats", window.location.origin);
  const seconds = Number(windowChoice.value);
  if (seconds) {
    const since = new Date(Date.now() - seconds * 1000);
    // ISO 8601 in UTC, to the second: 2024-05-01T12:00:00Z
    url.searchParams.set("since", since.toISOString().replace(/\.\d+Z$/, "Z"));
  }
  return url;
}

async function load() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  say("Loading…");
  let response;
  let body = null;
  try {
    response = await fetch(statsUrl(), {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
    body = await response.json();
  } catch (error) {
    say(`No answer from the service (${error.message}); try again.`, true);
    return;
  }
  if (response.status === 404) {
    // /stats answers 404 to a missing or wrong token, as if it did not exist.
    sessionStorage.removeItem(TOKEN_KEY);
    dashboard.hidden = true;
    say(
      "Wrong token: the service did not accept it. Type the ADMIN_TOKEN the service was " +
        "started with (without one, /stats is off).",
      true,
    );
    tokenInput.focus();
    return;
  }
  if (!response.ok) {
    say(`The service refused (${response.status}): ${body && body.error}`, true);
    return;
  }
  showStats(body);
  say(`Updated at ${new Date().toLocaleTimeString()}.`);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!tokenInput.value) {
    say("Type the admin token first.", true);
    tokenInput.focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
  load();
});

windowChoice.addEventListener("change", load);

byId("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  tokenInput.value = "";
  dashboard.hidden = true;
  say("The token is forgotten.");
  tokenInput.focus();
});

tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
load();
