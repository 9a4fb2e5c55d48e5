"use strict";
// The monitoring page (templates/monitor.html): GET /stats with the admin token, drawn as
// numbers, SVG charts and tables. The token lives only in this tab's sessionStorage.
// The page follows the task of the model (stats.model.task.task): a binary classifier, a
// multiclass one or a regressor; each shows its own sections and hides the others.

const TOKEN_KEY = "monitor.adminToken";
const SVG = "http://www.w3.org/2000/svg";
const DRIFT_THRESHOLD = 0.25; // PSI from which a column counts as drifted

const form = document.getElementById("stats-form");
const tokenInput = document.getElementById("token");
const windowChoice = document.getElementById("window");
const versionChoice = document.getElementById("version");
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

// Errors span any range: three significant digits say enough.
function short(value) {
  return value === null || value === undefined ? "none" : String(Number(value.toPrecision(3)));
}

function say(message, isError = false) {
  statusLine.textContent = message;
  statusLine.className = isError ? "status-error" : "";
}

function show(id, shown) {
  byId(id).hidden = !shown;
}

// A class of any JSON type as text: "yes", 1, true.
function classText(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function svg(name, attributes = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// rowHeaders: the first cell of each row names the row (a <th>), as in a confusion matrix.
// A cell may be a node (a <strong> number) rather than text. Every cell carries its
// column's name (data-label): a "stacked" table shows it on a phone, where each row is a card.
// isNumber(index) says which columns hold numbers (aligned right): all but the first.
function table(id, headers, rows, rowHeaders = false, isNumber = (index) => index > 0) {
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
      let cell;
      if (rowHeaders && index === 0) {
        cell = document.createElement("th");
        cell.scope = "row";
        tableRow.append(cell);
      } else {
        cell = tableRow.insertCell();
      }
      if (value instanceof Node) cell.append(value);
      else cell.textContent = value;
      if (isNumber(index)) cell.className = "number";
      if (headers[index]) cell.dataset.label = headers[index];
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

const PROBABILITY_TICKS = TENTHS.map((tick) => [xOf(tick), tick.toFixed(1)]);

// Across, xTicks ([x, text, anchor]) under xTitle; up, a share from 0 to 1 with its labels.
function axes(chart, yTitle, yTicks, xTitle, xTicks = PROBABILITY_TICKS) {
  for (const [x, text, anchor = "middle"] of xTicks) {
    chart.append(line("grid", x, FRAME.top, x, FRAME.bottom));
    chart.append(label(x, FRAME.bottom + 14, text, anchor));
  }
  for (const [share, text] of yTicks) {
    chart.append(line("grid", FRAME.left, yOf(share), FRAME.right, yOf(share)));
    chart.append(label(FRAME.left - 4, yOf(share) + 4, text, "end"));
  }
  chart.append(line("axis", FRAME.left, FRAME.bottom, FRAME.right, FRAME.bottom));
  chart.append(line("axis", FRAME.left, FRAME.top, FRAME.left, FRAME.bottom));
  const middle = (FRAME.left + FRAME.right) / 2;
  chart.append(label(middle, FRAME.height - 8, xTitle, "middle"));
  const yTitleAt = (FRAME.top + FRAME.bottom) / 2;
  const title = label(12, yTitleAt, yTitle, "middle");
  title.setAttribute("transform", `rotate(-90 12 ${yTitleAt})`);
  chart.append(title);
}

function startChart(chartOrId, height = FRAME.height) {
  const chart = typeof chartOrId === "string" ? byId(chartOrId) : chartOrId;
  chart.replaceChildren();
  chart.setAttribute("viewBox", `0 0 ${FRAME.width} ${height}`);
  return chart;
}

function noData(chart, message) {
  chart.append(label(FRAME.width / 2, FRAME.height / 2, message, "middle"));
}

function drawCalibration(bins, xTitle) {
  const chart = startChart("calibration-chart");
  axes(chart, "observed share", TENTHS.map((share) => [share, share.toFixed(1)]), xTitle);
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

// Bars of counts over [bin.low, bin.high); xAt maps a bin edge to the drawing.
function drawBars(chart, bins, xAt, what) {
  const most = Math.max(0, ...bins.map((bin) => bin.count));
  if (!most) return false;
  for (const bin of bins) {
    const top = yOf(bin.count / most);
    const bar = svg("rect", {
      class: "bar",
      x: xAt(bin.low) + 1,
      width: Math.max(1, xAt(bin.high) - xAt(bin.low) - 2),
      y: top,
      height: FRAME.bottom - top,
    });
    bar.append(svg("title", {}, `${what(bin)}: ${bin.count} predictions`));
    chart.append(bar);
    const middle = (xAt(bin.low) + xAt(bin.high)) / 2;
    chart.append(label(middle, top - 3, String(bin.count), "middle", "label-small"));
  }
  return true;
}

function drawDistribution(bins, xTitle) {
  const chart = startChart("distribution-chart");
  const most = Math.max(0, ...bins.map((bin) => bin.count));
  axes(chart, "predictions", [[0, "0"], [1, String(most)]], xTitle);
  if (!drawBars(chart, bins, xOf, binLabel)) noData(chart, "No predictions in this window");
}

// The errors of one target: 10 bars from the smallest error to the largest, and a dashed
// line at 0 (no error) when it falls inside. The last tick label ends at its tick: centred,
// it would run past the drawing.
function drawErrors(chart, errors) {
  startChart(chart);
  if (!errors) {
    axes(chart, "predictions", [[0, "0"]], "prediction - true value", []);
    noData(chart, "No predictions with their outcome yet");
    return;
  }
  const bins = errors.bins;
  const low = bins[0].low;
  const span = bins[bins.length - 1].high - low || 1;
  const xAt = (value) => FRAME.left + ((value - low) / span) * (FRAME.right - FRAME.left);
  const ticks = [low, low + span / 2, low + span].map((value, i) => [
    xAt(value),
    short(value),
    i === 2 ? "end" : "middle",
  ]);
  const most = Math.max(...bins.map((bin) => bin.count));
  axes(chart, "predictions", [[0, "0"], [1, String(most)]], "prediction - true value", ticks);
  drawBars(chart, bins, xAt, (bin) => `${short(bin.low)} to ${short(bin.high)}`);
  if (low <= 0 && 0 <= low + span) {
    const zero = line("ideal", xAt(0), FRAME.top, xAt(0), FRAME.bottom);
    zero.append(svg("title", {}, "no error (0)"));
    chart.append(zero);
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

// --- Quality over time: /stats's `daily`, one slot per day (UTC) ---------------------------

// Two panels over the same days: the metric with its interval above, the rows below.
const DAILY = { top: 12, metricBottom: 124, countsTop: 146, bottom: 206, height: 250 };
const DAY_MS = 86400000;

function dayNumber(day) {
  return Date.parse(`${day}T00:00:00Z`) / DAY_MS;
}

// The first power of ten times 1, 2 or 5 at or above value: a round top for the axis.
function roundedUp(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((step) => step * power).find((top) => top >= value);
}

// y of a value from 0 to top in the band [top, bottom] of the drawing, kept inside it.
function bandScale(top, bottom, highest) {
  return (value) => bottom - (Math.min(Math.max(value, 0), highest) / highest) * (bottom - top);
}

// A panel's frame: grid lines at ticks ([y, text]), its axes, its title up the side.
function panel(chart, top, bottom, title, ticks) {
  for (const [y, text] of ticks) {
    chart.append(line("grid", FRAME.left, y, FRAME.right, y));
    chart.append(label(FRAME.left - 4, y + 4, text, "end"));
  }
  chart.append(line("axis", FRAME.left, bottom, FRAME.right, bottom));
  chart.append(line("axis", FRAME.left, top, FRAME.left, bottom));
  const middle = (top + bottom) / 2;
  const name = label(12, middle, title, "middle");
  name.setAttribute("transform", `rotate(-90 12 ${middle})`);
  chart.append(name);
}

// A day's figure: its interval as a vertical line (capped where there is room), its value
// as a circle, and all three numbers in its tooltip.
function drawDayFigure(chart, x, y, day, halfSlot) {
  const { metric } = day;
  const group = svg("g", { class: "day-figure" });
  const said = `${day.day}: ${metricName(metric.name)} ${figureText(metric)}`;
  group.append(svg("title", {}, `${said}, ${day.labelled} with outcome`));
  group.append(line("interval", x, y(metric.low), x, y(metric.high)));
  const cap = Math.min(4, halfSlot - 1);
  if (cap >= 2) {
    for (const end of [metric.low, metric.high]) {
      group.append(line("interval", x - cap, y(end), x + cap, y(end)));
    }
  }
  const r = Math.max(1.5, Math.min(4, halfSlot - 1));
  group.append(svg("circle", { class: "point", cx: x, cy: y(metric.value), r }));
  chart.append(group);
}

// A day's rows: an outlined bar of its predictions, filled up to those with their outcome.
function drawDayRows(chart, x, y, day, halfSlot) {
  const half = Math.max(0.5, Math.min(12, halfSlot * 0.8));
  const bar = (className, count, text) => {
    const rect = svg("rect", {
      class: className,
      x: x - half,
      width: 2 * half,
      y: y(count),
      height: DAILY.bottom - y(count),
    });
    rect.append(svg("title", {}, text));
    chart.append(rect);
  };
  bar("bar-outline", day.predictions, `${day.day}: ${rowsText(day.predictions)}`);
  bar("bar", day.labelled, `${day.day}: ${day.labelled} with outcome`);
}

// The upper panel: accuracy from 0 to 1, or MAE from 0 to a round number above the
// highest interval (a normal interval may reach below 0: it is cut at the axis).
function drawDailyFigures(chart, daily, metric, xOfDay, halfSlot) {
  const figures = daily.filter((day) => day.metric);
  const mae = metric === "mae";
  const top = mae ? roundedUp(Math.max(...figures.map((day) => day.metric.high))) : 1;
  const y = bandScale(DAILY.top, DAILY.metricBottom, top);
  const ticks = mae
    ? [0, top / 2, top].map((value) => [y(value), short(value)])
    : TENTHS.map((value) => [y(value), value.toFixed(1)]);
  panel(chart, DAILY.top, DAILY.metricBottom, mae ? "MAE" : "accuracy", ticks);
  for (const day of figures) drawDayFigure(chart, xOfDay(day.day), y, day, halfSlot);
  if (!figures.length) {
    const middle = (DAILY.top + DAILY.metricBottom) / 2;
    const centre = (FRAME.left + FRAME.right) / 2;
    chart.append(label(centre, middle, "No predictions with their outcome yet", "middle"));
  }
}

// Days placed by their date: a day without rows keeps its empty slot.
function drawDaily(daily, metric) {
  const chart = startChart("daily-chart", DAILY.height);
  const first = daily[0].day;
  const last = daily[daily.length - 1].day;
  const slot = (FRAME.right - FRAME.left) / (dayNumber(last) - dayNumber(first) + 1);
  const xOfDay = (day) => FRAME.left + (dayNumber(day) - dayNumber(first) + 0.5) * slot;
  drawDailyFigures(chart, daily, metric, xOfDay, slot / 2);

  const most = Math.max(1, ...daily.map((day) => Math.max(day.predictions, day.labelled)));
  const y = bandScale(DAILY.countsTop, DAILY.bottom, most);
  panel(chart, DAILY.countsTop, DAILY.bottom, "rows", [[y(0), "0"], [y(most), String(most)]]);
  for (const day of daily) drawDayRows(chart, xOfDay(day.day), y, day, slot / 2);

  const under = DAILY.bottom + 14; // one day under its bar; else the first and the last
  if (last === first) chart.append(label(xOfDay(first), under, first, "middle"));
  else chart.append(label(FRAME.left, under, first), label(FRAME.right, under, last, "end"));
  chart.append(label((FRAME.left + FRAME.right) / 2, DAILY.height - 8, "day (UTC)", "middle"));
}

// --- The model, its versions, the window ---------------------------------------------------

function describeWindow(span) {
  if (!span.since && !span.until) return "All predictions stored.";
  return `Predictions made from ${span.since || "the first one"} to ${span.until || "now"} (UTC).`;
}

function describeTask(task) {
  if (task.task === "binary") {
    const [first, second] = task.classes.map(classText);
    return (
      `a binary classifier of the classes ${first} and ${second}, which now decides ` +
      `${classText(task.positive_class)} when its probability is at least ${task.threshold}`
    );
  }
  if (task.task === "multiclass") {
    return `a multiclass classifier of the classes ${task.classes.map(classText).join(", ")}`;
  }
  return task.targets
    ? `a regressor of ${task.targets.join(", ")}`
    : "a regressor that predicts one number";
}

function describeModel(model) {
  const task = describeTask(model.task);
  if (model.reported_version === model.version) {
    return `Model ${model.version}, served now: ${task}.`;
  }
  const rows =
    model.reported_version === "unknown"
      ? "Rows stored before the service recorded model versions"
      : `Rows of model ${model.reported_version}`;
  return `${rows}, read as the model served now (${model.version}) reads them: ${task}.`;
}

// The picker lists the versions present in the window, and keeps the one chosen even when
// the window holds none of its rows.
function showVersions(stats) {
  const chosen = versionChoice.value;
  const served = stats.model.version;
  const options = [new Option(`served now: ${served}`, "")];
  for (const version of stats.versions) {
    if (version.version === served) continue;
    const before = version.version === "unknown" ? ", from before versions" : "";
    const text = `${version.version} (${version.predictions} predictions${before})`;
    options.push(new Option(text, version.version));
  }
  if (chosen && !options.some((option) => option.value === chosen)) {
    options.push(new Option(`${chosen} (none in this window)`, chosen));
  }
  versionChoice.replaceChildren(...options);
  versionChoice.value = chosen;
  table(
    "versions-table",
    ["version", "predictions", "with outcome", "first stored (UTC)", "last stored (UTC)", "served"],
    stats.versions.map((version) => [
      version.version,
      String(version.predictions),
      String(version.labelled),
      version.first_stored,
      version.last_stored,
      version.serving ? "yes" : "no",
    ]),
  );
  show("versions-details", stats.versions.length > 0);
}

// What notebook 1 measured on rows kept out of training: the yardstick for the live numbers
// (of the model served now only: the profile is its own).
const HELD_OUT_NAMES = {
  roc_auc: "ROC AUC",
  accuracy: "accuracy",
  macro_f1: "macro F1",
  log_loss: "log loss",
  mae: "MAE",
  rmse: "RMSE",
  r2: "R²",
};

function heldOutFigures(figures) {
  return Object.entries(HELD_OUT_NAMES)
    .filter(([key]) => typeof figures[key] === "number")
    .map(([key, name]) => `${name} ${fixed(figures[key], 3)}`)
    .join(", ");
}

function showHeldOut(model) {
  const heldOut = model.held_out;
  const sentence = byId("held-out");
  let figures = heldOut ? heldOutFigures(heldOut) : "";
  if (heldOut && heldOut.targets) {
    figures = Object.entries(heldOut.targets)
      .map(([target, found]) => `${target}: ${heldOutFigures(found)}`)
      .join("; ");
  }
  sentence.hidden = !figures || model.reported_version !== model.version;
  if (sentence.hidden) return;
  sentence.textContent = `At training, on ${heldOut.rows} held-out rows: ${figures}.`;
}

// --- Each task's numbers ---------------------------------------------------------------

function setFigures(figures) {
  for (const [id, value] of Object.entries(figures)) byId(id).textContent = fixed(value, 3);
}

function showBinary(metrics) {
  setFigures({
    "metric-roc-auc": metrics.roc_auc,
    "metric-accuracy": metrics.accuracy,
    "metric-precision": metrics.precision,
    "metric-recall": metrics.recall,
    "metric-f1": metrics.f1,
    "metric-positive-rate": metrics.positive_rate,
    "metric-log-loss": metrics.log_loss,
    "metric-brier": metrics.brier,
  });
  // Each row was decided at the threshold in force when it was answered.
  const thresholds = metrics.thresholds.map((t) => String(t.threshold));
  byId("accuracy-term").textContent = thresholds.length
    ? `accuracy, at the threshold${thresholds.length > 1 ? "s" : ""} ${thresholds.join(", ")}`
    : "accuracy, at the threshold";
}

function showMulticlass(metrics) {
  setFigures({
    "metric-multiclass-accuracy": metrics.accuracy,
    "metric-macro-f1": metrics.macro_f1,
    "metric-multiclass-log-loss": metrics.log_loss,
  });
  table(
    "classes-table",
    ["class", "true", "predicted", "predicted, all rows", "precision", "recall", "F1"],
    metrics.per_class.map((row) => [
      classText(row.class),
      String(row.true),
      String(row.predicted),
      String(row.predicted_all),
      fixed(row.precision, 3),
      fixed(row.recall, 3),
      fixed(row.f1, 3),
    ]),
    true,
  );
}

function showConfusion(confusion, task) {
  const names = confusion.labels.map(classText);
  const rows = confusion.matrix.map((counts, i) => [
    `true ${names[i]}`,
    ...counts.map((count, j) => {
      if (i !== j) return String(count);
      const right = document.createElement("strong");
      right.textContent = String(count);
      return right;
    }),
  ]);
  table("confusion-table", ["", ...names.map((name) => `predicted ${name}`)], rows, true);
  byId("confusion-text").textContent =
    "One row per true class, one column per predicted class: the numbers on the diagonal " +
    "(in bold) are the right answers." +
    (task.task === "binary"
      ? ` A prediction is ${classText(task.positive_class)} when its probability reached ` +
        "the threshold in force when it was answered."
      : " The predicted class is the most probable one.");
}

// {target: {mae, rmse, r2, errors}}, also for a model of one number.
function regressionTargets(metrics, task) {
  if (metrics.targets) return Object.entries(metrics.targets);
  return [[task.targets ? task.targets[0] : "prediction", metrics]];
}

function showRegression(metrics, task) {
  const targets = regressionTargets(metrics, task);
  table(
    "regression-table",
    ["target", "MAE", "RMSE", "R²", "mean error"],
    targets.map(([name, found]) => [
      name,
      fixed(found.mae, 3),
      fixed(found.rmse, 3),
      fixed(found.r2, 3),
      fixed(found.errors && found.errors.mean, 3),
    ]),
    true,
  );
  const charts = byId("errors-charts");
  charts.replaceChildren();
  targets.forEach(([name, found], index) => {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.id = `errors-caption-${index}`;
    caption.textContent =
      `${name}: how many predictions fell in each bin of error; the dashed line marks ` +
      "0, no error.";
    const chart = svg("svg", { class: "chart", role: "img", "aria-labelledby": caption.id });
    figure.append(chart, caption);
    charts.append(figure);
    drawErrors(chart, found.errors);
  });
  const quantiles = ["smallest", "5 %", "25 %", "median", "75 %", "95 %", "largest"];
  table(
    "errors-table",
    ["target", ...quantiles],
    targets.map(([name, found]) => [
      name,
      ...(found.errors
        ? found.errors.quantiles.map((q) => short(q.value))
        : quantiles.map(() => "none")),
    ]),
    true,
  );
}

function showMetrics(stats) {
  const { metrics } = stats;
  const { task } = stats.model;
  const kind = task.task;
  show("binary-metrics", kind === "binary");
  show("multiclass-metrics", kind === "multiclass");
  show("regression-metrics", kind === "regression");
  show("confusion-section", kind !== "regression");
  show("classes-section", kind === "multiclass");
  show("errors-section", kind === "regression");
  if (kind === "binary") showBinary(metrics);
  if (kind === "multiclass") showMulticlass(metrics);
  if (kind === "regression") showRegression(metrics, task);
  if (metrics.confusion_matrix) showConfusion(metrics.confusion_matrix, task);
  const reason = byId("metrics-reason");
  reason.hidden = !metrics.reason;
  reason.textContent = metrics.reason ? `No metrics: ${metrics.reason}` : "";
}

// Binary: P(positive class); multiclass: the probability of the predicted class.
function showProbabilities(stats) {
  const { task } = stats.model;
  const shown = stats.calibration !== null && stats.distribution !== null;
  show("calibration-section", shown);
  show("distribution-section", shown);
  if (!shown) return;
  const binary = task.task === "binary";
  const positive = binary ? classText(task.positive_class) : "";
  const xTitle = binary ? `probability of ${positive}` : "probability of the predicted class";
  byId("calibration-caption").textContent = binary
    ? `The predicted probability of ${positive} (across) against the share of ${positive} ` +
      "among the outcomes (up), one circle per tenth of the probability scale that holds " +
      "labelled predictions. On the dashed diagonal, a predicted 0.3 comes true 3 times " +
      "in 10: the model is calibrated."
    : "The probability of the predicted class (across) against the share of predictions " +
      "whose class was right (up), one circle per tenth of the probability scale that " +
      "holds labelled predictions. On the dashed diagonal, a class predicted at 0.7 is " +
      "right 7 times in 10: the model is calibrated.";
  byId("distribution-title").textContent = binary
    ? "Distribution of the probabilities"
    : "Distribution of the probability of the predicted class";
  byId("distribution-caption").textContent = binary
    ? `How many predictions fell in each tenth of the scale of the probability of ` +
      `${positive}, labelled or not.`
    : "How many predictions gave their predicted class a probability in each tenth of the " +
      "scale, labelled or not: the lower, the less sure the model.";
  drawCalibration(stats.calibration, xTitle);
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
  drawDistribution(stats.distribution, xTitle);
  table(
    "distribution-table",
    ["probability", "predictions"],
    stats.distribution.map((bin) => [binLabel(bin), String(bin.count)]),
  );
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

// /stats's `daily`: the caption says how to read the chart, the summary what it shows, the
// table every number; hidden without a day.
function dailyMetric(task) {
  if (task.task !== "regression") return { key: "accuracy", name: "accuracy", better: 1 };
  const targets = task.targets || [];
  let of = "";
  if (targets.length === 1) of = ` of ${targets[0]}`;
  if (targets.length > 1) of = ` of its first target, ${targets[0]},`;
  return { key: "mae", name: "MAE (lower is better)", better: -1, of };
}

function dailyCaption(metric) {
  const figure =
    metric.key === "mae"
      ? `mean absolute error (MAE)${metric.of} as a circle, with its 95 % interval (normal) ` +
        "as a vertical line: lower is better"
      : "accuracy as a circle, with its 95 % interval (Wilson's) as a vertical line: " +
        "higher is better";
  return (
    `Above, each day's ${figure}. Below, each day's predictions (outlined bar), filled up ` +
    "to those with their outcome. A day without outcomes has no circle, only its bar."
  );
}

function outcomes(count) {
  return count === 1 ? "1 outcome" : `${count} outcomes`;
}

function dailySummary(daily, metric) {
  const days = daily.length === 1 ? "1 day" : `${daily.length} days`;
  const span = daily.length === 1 ? daily[0].day : `${daily[0].day} to ${daily.at(-1).day}`;
  const judged = daily.filter((day) => day.metric);
  const said = `${days} with predictions (UTC: ${span}), ${judged.length} with outcomes`;
  if (!judged.length) return `${said}: no figure to draw yet.`;
  const name = metric.key === "mae" ? "MAE" : "Accuracy";
  const latest = judged.at(-1);
  const figure = `${figureText(latest.metric)} from ${outcomes(latest.labelled)}`;
  if (judged.length === 1) return `${said}. ${name}, ${latest.day}: ${figure}.`;
  const ranked = [...judged].sort((a, b) => metric.better * (b.metric.value - a.metric.value));
  const at = (day) => `${fixed(day.metric.value, 3)} on ${day.day}`;
  return (
    `${said}. ${name}: the best ${at(ranked[0])}, the worst ${at(ranked.at(-1))}; ` +
    `the latest, ${latest.day}: ${figure}.`
  );
}

function showDaily(daily, task) {
  show("daily-section", daily.length > 0);
  if (!daily.length) return;
  const metric = dailyMetric(task);
  byId("daily-caption").textContent = dailyCaption(metric);
  byId("daily-summary").textContent = dailySummary(daily, metric);
  drawDaily(daily, metric.key);
  table(
    "daily-table",
    ["day (UTC)", "predictions", "with outcome", metric.name, "95 % interval"],
    daily.map((day) => [
      day.day,
      String(day.predictions),
      String(day.labelled),
      fixed(day.metric && day.metric.value, 3),
      day.metric ? `${fixed(day.metric.low, 3)} to ${fixed(day.metric.high, 3)}` : "none",
    ]),
  );
}

// --- The challenger (CHALLENGER_DIR): /stats's `challenger`, beside the model -------------

// The figures compared, in the order of the quality section: [key, name, which way is
// better] (1: higher, -1: lower, 0: neither, as for the share decided positive).
const COMPARED = {
  binary: [
    ["roc_auc", "ROC AUC", 1],
    ["accuracy", "accuracy", 1],
    ["precision", "precision", 1],
    ["recall", "recall", 1],
    ["f1", "F1", 1],
    ["positive_rate", "share decided positive", 0],
    ["log_loss", "log loss", -1],
    ["brier", "Brier score", -1],
  ],
  multiclass: [
    ["accuracy", "accuracy", 1],
    ["macro_f1", "macro F1", 1],
    ["log_loss", "log loss", -1],
  ],
  regression: [
    ["mae", "MAE", -1],
    ["rmse", "RMSE", -1],
    ["r2", "R²", 1],
  ],
};

// A regressor of several targets: "Weight.mae", as `differences` names it.
function comparedFigures(task) {
  const figures = COMPARED[task.task];
  if (task.task !== "regression" || !task.targets) return figures;
  return task.targets.flatMap((target) =>
    figures.map(([key, name, better]) => [`${target}.${key}`, `${name} of ${target}`, better]),
  );
}

// metrics.targets.Weight.mae for "Weight.mae".
function figureOf(metrics, key) {
  const dot = key.lastIndexOf(".");
  if (dot < 0) return metrics[key];
  const target = metrics.targets && metrics.targets[key.slice(0, dot)];
  return target ? target[key.slice(dot + 1)] : null;
}

function signed(value) {
  if (value === null || value === undefined) return "none";
  return `${value > 0 ? "+" : ""}${fixed(value, 3)}`;
}

// [words, class of the cell]: which way a difference goes, once its interval leaves out 0.
function verdict(difference, better) {
  if (difference === undefined) return ["no interval", ""];
  if (difference === null) return ["none", ""];
  if (difference.low <= 0 && difference.high >= 0) return ["could be chance", ""];
  const higher = difference.low > 0;
  if (better === 0) return [`${higher ? "higher" : "lower"}, more than chance`, "beyond"];
  return (better > 0) === higher
    ? ["challenger better, more than chance", "better"]
    : ["challenger worse, more than chance", "worse"];
}

// A figure without a paired interval (macro F1, R²) gets its plain difference.
function differenceText(difference, mine, theirs) {
  if (difference === undefined) {
    return typeof mine === "number" && typeof theirs === "number"
      ? `${signed(theirs - mine)} (no interval)`
      : "none";
  }
  if (difference === null) return "none";
  return `${signed(difference.value)} [${fixed(difference.low, 3)}, ${fixed(difference.high, 3)}]`;
}

function showComparedFigures(challenger, task) {
  // No labelled row: no differences at all, rather than figures without an interval.
  const differences = challenger.differences || {};
  const figures = comparedFigures(task).map(([key, name, better]) => ({
    name,
    mine: figureOf(challenger.model_metrics, key),
    theirs: figureOf(challenger.metrics, key),
    difference: challenger.differences === null ? null : differences[key],
    better,
  }));
  const verdicts = figures.map((figure) => verdict(figure.difference, figure.better));
  table(
    "challenger-table",
    ["figure", "model", "challenger", "difference [95 % interval]", "verdict"],
    figures.map((figure, i) => [
      figure.name,
      fixed(figure.mine, 3),
      fixed(figure.theirs, 3),
      differenceText(figure.difference, figure.mine, figure.theirs),
      verdicts[i][0],
    ]),
    true,
    (index) => index > 0 && index < 4,
  );
  byId("challenger-table")
    .querySelectorAll("tbody tr")
    .forEach((row, i) => {
      const kind = verdicts[i][1];
      if (kind) [row.cells[3], row.cells[4]].forEach((cell) => cell.classList.add(kind));
    });
}

function rowsText(count) {
  return count === 1 ? "1 prediction" : `${count} predictions`;
}

// p = 0.36, or p < 0.001.
function pText(p) {
  return p < 0.001 ? "p < 0.001" : `p = ${fixed(p, p < 0.01 ? 3 : 2)}`;
}

function pairedTestText(test) {
  if (!test) return "No paired test: none of the predictions both scored has its outcome yet.";
  const { challenger_better: theirs, model_better: mine } = test;
  const counts =
    test.test === "mcnemar_exact"
      ? "McNemar's exact test: the challenger was right where the model was wrong on " +
        `${rowsText(theirs)}, the reverse on ${mine}`
      : "Wilcoxon's signed-rank test on the absolute errors: the challenger's error was the " +
        `smaller on ${rowsText(theirs)}, the model's on ${mine}`;
  if (test.p_value >= 0.05) return `${counts}; ${pText(test.p_value)}: this could be chance.`;
  const side = theirs > mine ? " in the challenger's favour" : " in the model's favour";
  return `${counts}; ${pText(test.p_value)}: more than chance,${theirs === mine ? "" : side}.`;
}

// /health names the folders of the two models; /stats, their versions only.
async function healthOf() {
  try {
    const response = await fetch("/health", { cache: "no-store" });
    return await response.json(); // a 503 (no database) still describes the models
  } catch {
    return null;
  }
}

function showChallenger(challenger, health, task) {
  show("challenger-section", Boolean(challenger));
  if (!challenger) return;
  const unknown = "unknown (no answer from /health)";
  const theirs = health && health.challenger;
  byId("challenger-version").textContent = challenger.version;
  byId("challenger-folder").textContent = theirs ? theirs.folder : unknown;
  byId("challenger-model-version").textContent = health ? health.model.version : unknown;
  byId("model-folder").textContent = health ? health.model.folder : unknown;
  byId("challenger-rows").textContent = String(challenger.rows);
  byId("challenger-labelled").textContent = String(challenger.labelled);
  show("challenger-changed-box", challenger.decisions_changed !== null);
  byId("challenger-changed").textContent = String(challenger.decisions_changed);
  showComparedFigures(challenger, task);
  byId("challenger-test").textContent = pairedTestText(challenger.paired_test);
}

// --- Groups: GET /stats?by=, the quality per group and the rules of api.toml ---------------

const groupChoices = ["group-by-1", "group-by-2", "group-by-3"].map(byId);
const groupsStatus = byId("groups-status");
const RULE_ORDER = { not_met: 0, undecided: 1, met: 2 };
const RULE_STATUS = { not_met: "not met", undecided: "undecided", met: "met" };
const METRIC_NAMES = {
  positive_rate: "share decided positive",
  precision: "precision (success rate)",
  recall: "recall",
  false_positive_rate: "false positive rate",
  roc_auc: "ROC AUC",
  accuracy: "accuracy",
  macro_f1: "macro F1",
  mae: "MAE",
  mean_error: "mean error (bias)",
};
const BOUND_WORDS = {
  at_least: "at least",
  at_most: "at most",
  spread_at_most: "apart by at most",
  ratio_at_least: "in a ratio of at least",
};
let groupsPicked = false; // whether the columns shown were picked (or are a rule's)

// "mae.Weight": a regressor's metric of one of its targets.
function metricName(name) {
  const [base, target] = name.split(".");
  const text = METRIC_NAMES[base] || base;
  return target ? `${text} of ${target}` : text;
}

function figureText(figure) {
  if (!figure) return "none";
  return `${fixed(figure.value, 3)} (${fixed(figure.low, 3)} to ${fixed(figure.high, 3)})`;
}

// A table's figure: the value, and its interval on a line of its own under it.
function figureCell(figure) {
  const cell = document.createElement("span");
  if (!figure) {
    cell.textContent = "none";
    return cell;
  }
  const interval = document.createElement("span");
  interval.className = "interval";
  interval.textContent = `${fixed(figure.low, 3)} to ${fixed(figure.high, 3)}`;
  cell.append(fixed(figure.value, 3), interval);
  return cell;
}

function groupName(group) {
  const values = Object.values(group);
  return values.length ? values.join(" · ") : "every prediction";
}

// The same group whatever the order of its columns.
function groupKey(group) {
  return JSON.stringify(Object.entries(group).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function sameColumns(a, b) {
  return a.length === b.length && a.every((column) => b.includes(column));
}

function pickedColumns() {
  const picked = groupChoices.map((choice) => choice.value).filter(Boolean);
  return [...new Set(picked)];
}

// Every select lists every column; what was picked stays picked.
function fillChoices(columns) {
  for (const choice of groupChoices) {
    const chosen = choice.value;
    const none = choice.options[0];
    choice.replaceChildren(none, ...columns.map((column) => new Option(column, column)));
    choice.value = columns.includes(chosen) ? chosen : "";
  }
}

function pick(columns) {
  groupChoices.forEach((choice, i) => {
    choice.value = columns[i] || "";
  });
}

// What a rule asks, in words.
function ruleText(rule) {
  const bound = Object.keys(BOUND_WORDS).find((key) => key in rule);
  const groups = rule.by.join(" × ");
  if (bound === "at_least" || bound === "at_most") {
    return `${metricName(rule.metric)} ${BOUND_WORDS[bound]} ${rule[bound]} in each ${groups}`;
  }
  const within = rule.within.length ? `, within each ${rule.within.join(" × ")}` : "";
  const limit = `${BOUND_WORDS[bound]} ${rule[bound]}`;
  return `${metricName(rule.metric)} of each ${groups} ${limit}${within}`;
}

// Its name in bold, and what it asks under it.
function ruleCell(rule) {
  const cell = document.createElement("span");
  const name = document.createElement("strong");
  name.textContent = rule.name;
  const asks = document.createElement("span");
  asks.className = "interval";
  asks.textContent = ruleText(rule);
  cell.append(name, asks);
  return cell;
}

// Whether a failure is larger than what chance alone would give, with its interval.
function noise(entry) {
  return entry.beyond_noise ? "more than chance" : "could be chance";
}

function failureText(entry) {
  if (entry.group) return `${groupName(entry.group)}: ${figureText(entry)}, ${noise(entry)}`;
  const where = Object.keys(entry.within).length ? `${groupName(entry.within)}: ` : "";
  const ratio = entry.ratio === null ? "" : `, ratio ${fixed(entry.ratio, 3)}`;
  return (
    `${where}${groupName(entry.highest.group)} ${fixed(entry.highest.value, 3)} against ` +
    `${groupName(entry.lowest.group)} ${fixed(entry.lowest.value, 3)}, apart by ` +
    `${figureText(entry.difference)}${ratio}, ${noise(entry)}`
  );
}

function ruleDetails(rule) {
  const list = document.createElement("ul");
  const item = (text) => {
    const line = document.createElement("li");
    line.textContent = text;
    list.append(line);
  };
  for (const entry of rule.failing) item(`fails: ${failureText(entry)}`);
  if (rule.undecided.length) {
    const some = rule.undecided.slice(0, 3).map((u) => `${groupName(u.group)} (${u.labelled})`);
    const more = rule.undecided.length > 3 ? ", …" : "";
    const count = rule.undecided.length === 1 ? "1 group" : `${rule.undecided.length} groups`;
    item(`not judged, too few outcomes: ${count}, such as ${some.join(", ")}${more}`);
  }
  if (rule.reason) item(rule.reason);
  if (rule.status === "met") item(`all ${rule.judged} groups judged meet it`);
  return list;
}

function showRules(rules) {
  byId("rules-none").hidden = rules.length > 0;
  byId("rules-table").hidden = rules.length === 0;
  const sorted = [...rules].sort((a, b) => RULE_ORDER[a.status] - RULE_ORDER[b.status]);
  table(
    "rules-table",
    ["rule", "status", "details"],
    sorted.map((rule) => [ruleCell(rule), RULE_STATUS[rule.status], ruleDetails(rule)]),
    true,
    () => false,
  );
  byId("rules-table")
    .querySelectorAll("tbody tr")
    .forEach((row, i) => {
      if (sorted[i].status === "not_met") row.cells[1].classList.add("fails");
    });
}

// Each rule's status for the model and for the challenger, side by side, on the rows both
// scored (each judged with its own predictions), with what fails under each status.
function statusCell(rule) {
  const cell = document.createElement("span");
  if (!rule) {
    cell.textContent = "none";
    return cell;
  }
  cell.append(RULE_STATUS[rule.status], ruleDetails(rule));
  return cell;
}

function showChallengerRules(challenger) {
  const shown = Boolean(challenger) && challenger.model.rules.length > 0;
  byId("challenger-rules").hidden = !shown;
  if (!shown) return;
  const theirs = Object.fromEntries(challenger.challenger.rules.map((r) => [r.name, r]));
  const rows = challenger.model.rules.map((rule) => [rule, theirs[rule.name]]);
  table(
    "challenger-rules-table",
    ["rule", "model", `challenger ${challenger.version}`],
    rows.map(([mine, their]) => [ruleCell(mine), statusCell(mine), statusCell(their)]),
    true,
    () => false,
  );
  byId("challenger-rules-table")
    .querySelectorAll("tbody tr")
    .forEach((row, i) => {
      rows[i].forEach((rule, side) => {
        if (rule && rule.status === "not_met") row.cells[side + 1].classList.add("fails");
      });
    });
  byId("challenger-rules-text").textContent =
    `The same rules on the ${rowsText(challenger.predictions)} both models scored ` +
    `(${challenger.challenger.labelled} with their outcome), each model judged by its own ` +
    "predictions.";
}

// {group key: [names of the rules it fails]}, for the rules about these very columns.
function failuresByGroup(answer) {
  const failures = {};
  const add = (group, name) => {
    const key = groupKey(group);
    failures[key] = [...(failures[key] || []), name];
  };
  for (const rule of answer.rules) {
    if (!sameColumns([...rule.within, ...rule.by], answer.by)) continue;
    for (const entry of rule.failing) {
      if (entry.group) add(entry.group, rule.name);
      else [entry.lowest.group, entry.highest.group].forEach((group) => add(group, rule.name));
    }
  }
  return failures;
}

// What fails first, then the groups judged, worst first by the figure the rules are
// about (a lower precision, a higher error), then those too small to judge.
function sortGroups(answer, failures) {
  const rule = answer.rules.find((r) => sameColumns([...r.within, ...r.by], answer.by));
  const metric = rule ? rule.metric : answer.metrics.find((m) => m !== "positive_rate");
  const higherIsWorse = /^(mae|false_positive_rate)/.test(metric) || (rule && "at_most" in rule);
  const value = (group) => {
    const figure = group.metrics[metric];
    if (!figure) return Infinity;
    return higherIsWorse ? -figure.value : figure.value;
  };
  const rank = (group) => {
    if (failures[groupKey(group.group)]) return 0;
    return group.labelled >= answer.min_labelled ? 1 : 2;
  };
  return [...answer.groups].sort((a, b) => rank(a) - rank(b) || value(a) - value(b));
}

function showGroupList(answer) {
  const failures = failuresByGroup(answer);
  const sorted = sortGroups(answer, failures);
  const columns = answer.by.length ? answer.by.join(" · ") : "group";
  const figures = answer.metrics.map(metricName);
  const headers = [columns, "status", "predictions", "with outcome", ...figures];
  table(
    "groups-table",
    headers,
    sorted.map((group) => {
      const failed = failures[groupKey(group.group)];
      let status = "judged";
      if (failed) status = `fails: ${failed.join("; ")}`;
      else if (group.labelled < answer.min_labelled) status = "not judged: too few outcomes";
      return [
        groupName(group.group),
        status,
        String(group.predictions),
        String(group.labelled),
        ...answer.metrics.map((metric) => figureCell(group.metrics[metric])),
      ];
    }),
    true,
    (index) => index > 1,
  );
  byId("groups-table")
    .querySelectorAll("tbody tr")
    .forEach((row, i) => {
      if (failures[groupKey(sorted[i].group)]) row.cells[1].classList.add("fails");
    });
  const count = answer.groups.length === 1 ? "1 group" : `${answer.groups.length} groups`;
  byId("groups-text").textContent =
    `${count} of ${answer.predictions} predictions, ${answer.labelled} with their outcome; ` +
    `a group needs ${answer.min_labelled} outcomes to be judged. Each figure has its ` +
    `${Math.round(answer.confidence * 100)} % interval under it. What fails a rule comes first.`;
}

function showSpreads(answer) {
  const side = (end) => (end ? `${groupName(end.group)}: ${fixed(end.value, 3)}` : "none");
  table(
    "spreads-table",
    ["figure", "groups compared", "lowest", "highest", "difference", "ratio"],
    answer.metrics.map((metric) => {
      const spread = answer.spreads[metric];
      return [
        metricName(metric),
        String(spread.groups),
        side(spread.lowest),
        side(spread.highest),
        figureCell(spread.difference),
        fixed(spread.ratio, 3),
      ];
    }),
    true,
    (index) => index === 1 || index > 3,
  );
}

function showGroups(answer) {
  fillChoices(answer.columns);
  pick(answer.by);
  showRules(answer.rules);
  showChallengerRules(answer.challenger);
  showGroupList(answer);
  showSpreads(answer);
  byId("groups-results").hidden = false;
}

function groupsSay(message, isError = false) {
  groupsStatus.textContent = message;
  groupsStatus.className = isError ? "status-error" : "";
}

async function loadGroups() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  const url = statsUrl();
  url.searchParams.set("by", pickedColumns().join(","));
  groupsSay("Loading the groups…");
  let response;
  let body = null;
  try {
    response = await fetch(url, {
      headers: { Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
    body = await response.json();
  } catch (error) {
    groupsSay(`No answer from the service (${error.message}); try again.`, true);
    return;
  }
  if (!response.ok) {
    groupsSay(`The service refused (${response.status}): ${body && body.error}`, true);
    return;
  }
  // Nothing picked yet: show the groups of the first rule, the brief's own.
  if (!groupsPicked && body.rules.length && !body.by.length) {
    groupsPicked = true;
    const first = body.rules[0];
    fillChoices(body.columns);
    pick([...first.within, ...first.by]);
    loadGroups();
    return;
  }
  groupsPicked = true;
  showGroups(body);
  groupsSay(`Groups updated at ${new Date().toLocaleTimeString()}.`);
}

byId("groups-form").addEventListener("submit", (event) => {
  event.preventDefault();
  groupsPicked = true;
  loadGroups();
});

function showStats(stats) {
  byId("window-text").textContent = describeWindow(stats.window);
  byId("model-text").textContent = describeModel(stats.model);
  showVersions(stats);
  byId("count-predictions").textContent = String(stats.predictions);
  byId("count-labelled").textContent = String(stats.labelled);
  byId("count-left-out").textContent = String(stats.labelled_left_out);
  show("left-out-box", stats.labelled_left_out > 0);
  byId("count-unreadable").textContent = String(stats.unreadable_observations);
  showMetrics(stats);
  showHeldOut(stats.model);
  showProbabilities(stats);
  showDaily(stats.daily, stats.model.task);
  showDrift(stats.drift, stats.drift_note, stats.model.columns);
  dashboard.hidden = false;
}

// --- Asking /stats ---------------------------------------------------------------------

function statsUrl() {
  const url = new URL("/stats", window.location.origin);
  const seconds = Number(windowChoice.value);
  if (seconds) {
    const since = new Date(Date.now() - seconds * 1000);
    // ISO 8601 in UTC, to the second: 2024-05-01T12:00:00Z
    url.searchParams.set("since", since.toISOString().replace(/\.\d+Z$/, "Z"));
  }
  if (versionChoice.value) url.searchParams.set("model_version", versionChoice.value);
  return url;
}

async function load() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return;
  say("Loading…");
  const health = healthOf(); // asked beside /stats, awaited once /stats has answered
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
  const described = await health;
  showStats(body);
  showChallenger(body.challenger, described, body.model.task);
  say(`Updated at ${new Date().toLocaleTimeString()}.`);
  loadGroups();
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
versionChoice.addEventListener("change", load);

byId("forget-token").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  tokenInput.value = "";
  dashboard.hidden = true;
  say("The token is forgotten.");
  tokenInput.focus();
});

tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
load();
