"use strict";
// "Try the model" (templates/try.html): the form becomes the JSON of the contract's predict
// route (data-contract, written by model_service/pages.py from the contract), sent with a
// new random id; the answer, or the service's error next to its field, is shown. The body has the
// contract's shape: the features nested in its observation field, or next to the id (a flat
// body). An id field that is a model column takes the form's value; the others are random,
// of the id's type. The answer is shown as the model's task gives it (data-task), from what
// the contract's answer holds: a decision and its probability, a label and every class's
// probability, or numbers.
//
// The JSON text is written here rather than by JSON.stringify of an object: an integer id
// is 63 bits, beyond what a JavaScript number holds exactly, and integers typed in the form
// are sent digit for digit too.

const form = document.getElementById("observation-form");
const result = document.getElementById("result");
const inputs = Array.from(form.querySelectorAll("[data-kind]"));
const task = JSON.parse(form.dataset.task);
const contract = JSON.parse(form.dataset.contract);
const predictRoute = contract.predict;

// The JSON of a new id of this type: a 63-bit integer, or a string "try-<16 hex digits>".
function newId(kind) {
  if (kind === "string") {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
    return JSON.stringify(`try-${hex}`);
  }
  // 64 random bits with the top one cleared: an integer from 0 to 2^63 - 1.
  const [random] = crypto.getRandomValues(new BigUint64Array(1));
  return (random & ((1n << 63n) - 1n)).toString();
}

// How the service names a column in its messages: observation.Age, or Age in a flat body.
function fieldName(column) {
  return predictRoute.observation ? `${predictRoute.observation}.${column}` : column;
}

// {json: "<literal>"} for one field, or {problem: "<message>"} when it cannot be sent.
function jsonValue(input) {
  const value = input.value;
  const kind = input.dataset.kind;
  if (kind === "integer" || kind === "float") {
    if (input.validity.badInput) {
      return { problem: `${fieldName(input.name)} must be a number: this is not one` };
    }
    if (value === "") return { json: "null" };
    // Whole numbers exactly as typed (BigInt drops leading zeros, which JSON forbids);
    // a fraction is left for the service to accept or refuse, with its own message.
    if (/^-?\d+$/.test(value)) return { json: BigInt(value).toString() };
    const number = Number(value);
    if (!Number.isFinite(number)) return { json: number > 0 ? "1e999" : "-1e999" };
    return { json: String(number) };
  }
  if (value === "") return { json: "null" }; // empty: missing (refused for yes/no columns)
  if (kind === "boolean") return { json: value === "true" ? "true" : "false" };
  return { json: JSON.stringify(value) };
}

function pair(name, json) {
  return `${JSON.stringify(name)}: ${json}`;
}

// The id's fields: the form's value for a model column, a new random id for the others. In a
// flat body a model column is among the features already: it is written once.
function idPairs(values) {
  const fromForm = new Map(values.map(([input, value]) => [input.name, value.json]));
  return predictRoute.id
    .filter((name) => predictRoute.observation || !contract.id_columns.includes(name))
    .map((name) =>
      pair(
        name,
        contract.id_columns.includes(name) ? fromForm.get(name) : newId(predictRoute.id_types[name]),
      ),
    );
}

function requestBody(values) {
  const features = values.map(([input, value]) => pair(input.name, value.json));
  const ids = idPairs(values);
  if (!predictRoute.observation) return `{${[...ids, ...features].join(", ")}}`;
  const observation = pair(predictRoute.observation, `{${features.join(", ")}}`);
  return `{${[...ids, observation].join(", ")}}`;
}

// What the answer's keys hold of the prediction, by their sources: {probability: 0.76} for
// {"proba": ...}, {decision: true} for {"outcome": ...}; "prediction" alone is all of it.
function predictionParts(answer) {
  const parts = {};
  for (const [key, source] of Object.entries(predictRoute.answer)) {
    if (source === "prediction" && answer[key] !== null && typeof answer[key] === "object") {
      Object.assign(parts, answer[key]);
    } else if (source.startsWith("prediction.")) {
      parts[source.slice("prediction.".length)] = answer[key];
    }
  }
  return parts;
}

// --- Showing what happened -------------------------------------------------------------

function element(name, text, attributes = {}) {
  const node = document.createElement(name);
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function showInResult(state, ...nodes) {
  result.dataset.state = state;
  result.replaceChildren(element("h2", "Answer", { id: "result-title" }), ...nodes);
}

function percent(probability) {
  return `${(probability * 100).toFixed(1)} %`;
}

// What is shown of a number: 6 significant digits (the answer shown below has them all).
function rounded(number) {
  return String(Number(number.toPrecision(6)));
}

function headline(label, value, id) {
  const line = element("p", `${label}: `, { class: "headline" });
  line.append(element("strong", value, { id }));
  return line;
}

// --- Binary: the decision, and the probability it was taken on

function comparedWithThreshold(proba) {
  if (proba > task.threshold) return "above";
  return proba === task.threshold ? "at" : "below";
}

function binaryMeaning(proba) {
  const [positive, negative] = [task.positive_name, task.negative_name];
  const decided = proba >= task.threshold ? positive : negative;
  return (
    `A ${percent(proba)} chance of class ${positive} and ${percent(1 - proba)} ` +
    `of class ${negative}: ${comparedWithThreshold(proba)} the threshold ` +
    `${task.threshold}, so the decision is class ${decided}. If the model is well ` +
    `calibrated (see the monitoring page), about ${Math.round(proba * 100)} in 100 ` +
    `observations scored like this one are of class ${positive}.`
  );
}

function binaryNodes(parts) {
  if (typeof parts.probability !== "number") return decisionNodes(parts);
  const proba = parts.probability;
  const decided = proba >= task.threshold ? task.positive_name : task.negative_name;
  const probability = element("p", `Probability of class ${task.positive_name}: `, {
    class: "probability",
  });
  probability.append(element("strong", proba.toFixed(4), { id: "probability" }));
  probability.append(` (threshold ${task.threshold})`);
  return [
    headline("Decision", `class ${decided}`, "decision"),
    probability,
    element("p", binaryMeaning(proba), { id: "meaning" }),
  ];
}

function jsonKey(label) {
  return typeof label === "string" ? label : JSON.stringify(label);
}

// An answer with the decision (or the label) but not the probability, as briefs ask for.
function decisionNodes(parts) {
  let decided = parts.decision;
  if (typeof decided !== "boolean" && parts.label !== undefined) {
    decided = jsonKey(parts.label) === task.positive_name;
  }
  if (typeof decided !== "boolean") return []; // the answer holds nothing of the prediction
  const name = decided ? task.positive_name : task.negative_name;
  const meaning =
    `The model's probability of class ${task.positive_name} is ` +
    `${decided ? "at least" : "below"} the threshold ${task.threshold}, so the decision is ` +
    `class ${name}. The answer holds the decision, as the contract says; the stored row ` +
    "keeps the probability too.";
  return [
    headline("Decision", `class ${name}`, "decision"),
    element("p", meaning, { id: "meaning" }),
  ];
}

// --- Multiclass: the label, and a bar per class

function probabilityRow(key, probability, chosen) {
  const row = element("tr", undefined, chosen ? { class: "chosen" } : {});
  const name = element("th", key, { scope: "row" });
  if (chosen) name.append(" (the label)"); // in words, not only in bold
  const cell = element("td", percent(probability), { class: "number" });
  // The bar repeats the number for the eye; a screen reader reads the number alone.
  const bar = element("meter", undefined, { min: "0", max: "1", "aria-hidden": "true" });
  bar.value = probability;
  cell.append(bar);
  row.append(name, cell);
  return row;
}

function multiclassMeaning(key, answer) {
  const chance = (name) => answer.probabilities[name];
  const others = task.names.filter((name) => name !== key);
  const next = others.sort((a, b) => chance(b) - chance(a))[0];
  const first = `The most probable class is ${key}, at ${percent(chance(key))}`;
  if (next === undefined) return `${first}.`;
  return `${first}; the next one is ${next}, at ${percent(chance(next))}.`;
}

function multiclassNodes(parts) {
  if (!parts.probabilities) {
    if (parts.label === undefined) return [];
    return [headline("Label", jsonKey(parts.label), "label")];
  }
  const answer = parts;
  let index = task.classes.findIndex((label) => label === answer.label);
  if (index < 0) {
    // Probabilities without the label: the label is the most probable class.
    const chances = task.names.map((name) => answer.probabilities[name]);
    index = chances.indexOf(Math.max(...chances));
  }
  const key = task.names[index];
  const table = element("table", undefined, { id: "probabilities", class: "probabilities" });
  table.append(element("caption", "The probability of each class"));
  const head = element("tr");
  for (const title of ["class", "probability"]) head.append(element("th", title, { scope: "col" }));
  table.append(head);
  for (const [i, name] of task.names.entries()) {
    table.append(probabilityRow(name, answer.probabilities[name], i === index));
  }
  const scroll = element("div", undefined, { class: "table-scroll" });
  scroll.append(table);
  return [
    headline("Label", key, "label"),
    element("p", multiclassMeaning(key, answer), { id: "meaning" }),
    scroll,
  ];
}

// --- Regression: one number, or one per target

function regressionNodes(parts) {
  const targets = task.targets || [];
  if (targets.length <= 1) {
    // One number, perhaps named by targets.json.
    const number = parts.value ?? parts[targets[0]];
    if (typeof number !== "number") return [];
    const name = targets.length ? ` of ${targets[0]}` : "";
    const meaning =
      `The model predicts ${rounded(number)} for this observation (to 6 ` +
      "significant digits: the service's answer below has them all).";
    return [
      headline(`Prediction${name}`, rounded(number), "prediction"),
      element("p", meaning, { id: "meaning" }),
    ];
  }
  const present = targets.filter((target) => typeof parts[target] === "number");
  if (!present.length) return [];
  const table = element("table", undefined, { id: "predictions" });
  table.append(element("caption", "The prediction of each target"));
  for (const target of present) {
    const row = element("tr");
    row.append(
      element("th", target, { scope: "row" }),
      element("td", rounded(parts[target]), { class: "number" }),
    );
    table.append(row);
  }
  const said = present.map((target) => `${target} ${rounded(parts[target])}`);
  const meaning =
    `The model predicts ${said.join(", ")} for this observation (to 6 significant ` +
    "digits: the service's answer below has them all).";
  return [element("p", meaning, { id: "meaning" }), table];
}

const ANSWER_NODES = {
  binary: binaryNodes,
  multiclass: multiclassNodes,
  regression: regressionNodes,
};

function curlCommand(body) {
  const quoted = `'${body.replaceAll("'", "'\\''")}'`; // safe inside a POSIX shell
  return (
    `curl -s -X POST ${window.location.origin}${predictRoute.path} ` +
    `-H 'Content-Type: application/json' -d ${quoted}`
  );
}

function curlNodes(body) {
  const command = element("pre", undefined, { class: "command" });
  command.append(element("code", curlCommand(body), { id: "curl" }));
  const intro = "The same request with curl (the same id: sent again, it gets the same answer):";
  return [element("p", intro), command];
}

function showAnswer(answer, answerText, body) {
  const said = element("p", "The service answered ");
  said.append(element("code", answerText.trim(), { id: "answer" }));
  const nodes = ANSWER_NODES[task.task](predictionParts(answer));
  showInResult("answered", ...nodes, said, ...curlNodes(body));
}

function showRefusal(title, message, body) {
  const refusal = element("p", undefined, { class: "refusal" });
  refusal.append(
    element("strong", `${title}: `),
    element("span", message, { id: "error-message" }),
  );
  const nodes = body ? curlNodes(body) : [];
  showInResult("refused", refusal, ...nodes);
}

function fieldError(input) {
  return document.getElementById(`${input.id}-error`);
}

function clearFieldErrors() {
  for (const input of inputs) {
    input.removeAttribute("aria-invalid");
    fieldError(input).hidden = true;
    fieldError(input).textContent = "";
  }
}

function markField(input, message) {
  const error = fieldError(input);
  error.textContent = error.textContent ? `${error.textContent}; ${message}` : message;
  error.hidden = false;
  input.setAttribute("aria-invalid", "true");
}

// The service names fields as the contract does (observation.Age, or Age in a flat body;
// an id field by its own name) and joins several problems with "; ".
function namesOf(input) {
  const names = [fieldName(input.name)];
  if (contract.id_columns.includes(input.name)) names.push(input.name);
  return names;
}

function markFieldsNamedIn(message) {
  const named = inputs.flatMap((input) => namesOf(input).map((name) => [name, input]));
  named.sort(([a], [b]) => b.length - a.length); // "Age range" before "Age"
  const marked = [];
  for (const part of message.split("; ")) {
    const found = named.find(([name]) => part.startsWith(`${name} `));
    if (found) {
      markField(found[1], part);
      marked.push(found[1]);
    }
  }
  return marked;
}

function focusFirst(marked) {
  const first = inputs.find((input) => marked.includes(input));
  (first || result).focus();
}

// --- Sending ---------------------------------------------------------------------------

async function predict(event) {
  event.preventDefault();
  clearFieldErrors();
  const values = inputs.map((input) => [input, jsonValue(input)]);
  const problems = values.filter(([, value]) => value.problem);
  if (problems.length) {
    for (const [input, value] of problems) markField(input, value.problem);
    showRefusal("Not sent", problems.map(([, value]) => value.problem).join("; "));
    focusFirst(problems.map(([input]) => input));
    return;
  }
  const body = requestBody(values);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  showInResult("pending", element("p", "Asking the model…"));
  try {
    const response = await fetch(predictRoute.path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
    });
    const answerText = await response.text();
    const answer = JSON.parse(answerText);
    if (response.ok) {
      showAnswer(answer, answerText, body);
      result.focus();
    } else {
      const kind = response.status < 500 ? "Refused" : "The service failed";
      showRefusal(`${kind} (${response.status})`, answer.error, body);
      focusFirst(response.status < 500 ? markFieldsNamedIn(answer.error) : []);
    }
  } catch (error) {
    showRefusal("No answer from the service", `${error.message}; try again.`);
    result.focus();
  } finally {
    button.disabled = false;
  }
}

form.addEventListener("submit", predict);
