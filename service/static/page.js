// The drawing page: a pad drawn with pointer events (mouse, pen, touch), sent as a PNG to
// POST /predict?include=input,explanation after each stroke, and the answer shown: the digit,
// the ten probabilities, the verdict when the model has one, and the 28x28 picture the model
// saw with the occlusion map over it.  Plain script, no framework, no build step.
"use strict";

// A digit often takes several strokes: wait this long after one before asking.
const PREDICT_DELAY_MS = 300;
// The pen's width as a fraction of the pad's side, about a felt pen on a sticky note.
const PEN_FRACTION = 1 / 16;
const INK = "#111";
const VERDICTS = {
  digit: "A digit",
  uncertain: "Uncertain",
  not_a_digit: "Not a digit",
};

const pad = document.getElementById("pad");
const padPen = pad.getContext("2d");
const seen = document.getElementById("seen");
const seenPen = seen.getContext("2d");
const predictButton = document.getElementById("predict");
const clearButton = document.getElementById("clear");
const messageBox = document.getElementById("message");
const predictionBox = document.getElementById("prediction");
const verdictBox = document.getElementById("verdict");
const probabilitiesList = document.getElementById("probabilities");
const showMap = document.getElementById("show-map");

// The page's own ?model=<name> is passed on, so another image model can be tried.
const predictUrl = (() => {
  const url = new URL("/predict", window.location.href);
  url.searchParams.set("include", "input,explanation");
  const model = new URLSearchParams(window.location.search).get("model");
  if (model) url.searchParams.set("model", model);
  return url.pathname + url.search;
})();

let strokes = []; // each stroke a list of {x, y} in canvas pixels
let activePointer = null; // the pointer drawing the current stroke
let predictTimer = null;
// Bumped by every change of the drawing and every request: an answer to an older one is stale.
let sequence = 0;
let lastResult = null;

// --- sizes: canvases hold devicePixelRatio pixels per CSS pixel, so lines stay sharp ---

function fitToScreen(canvas) {
  const box = canvas.getBoundingClientRect();
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(box.width * ratio));
  const height = Math.max(1, Math.round(box.height * ratio));
  if (canvas.width === width && canvas.height === height) return 1;
  const scale = width / canvas.width;
  canvas.width = width;
  canvas.height = height;
  return scale;
}

function resize() {
  const scale = fitToScreen(pad);
  if (scale !== 1) {
    strokes = strokes.map((stroke) => stroke.map(({ x, y }) => ({ x: x * scale, y: y * scale })));
    redrawPad();
  }
  fitToScreen(seen);
  drawSeen(lastResult);
}

// --- drawing ---

function padPoint(event) {
  // Client (CSS) pixels -> canvas pixels: the canvas/CSS ratio covers devicePixelRatio and
  // any CSS scaling of the pad.
  const box = pad.getBoundingClientRect();
  return {
    x: (event.clientX - box.left) * (pad.width / box.width),
    y: (event.clientY - box.top) * (pad.height / box.height),
  };
}

function setPen() {
  padPen.lineWidth = pad.width * PEN_FRACTION;
  padPen.lineCap = "round";
  padPen.lineJoin = "round";
  padPen.strokeStyle = INK;
  padPen.fillStyle = INK;
}

function drawDot(point) {
  setPen();
  padPen.beginPath();
  padPen.arc(point.x, point.y, padPen.lineWidth / 2, 0, 2 * Math.PI);
  padPen.fill();
}

function drawLine(from, to) {
  setPen();
  padPen.beginPath();
  padPen.moveTo(from.x, from.y);
  padPen.lineTo(to.x, to.y);
  padPen.stroke();
}

function redrawPad() {
  padPen.clearRect(0, 0, pad.width, pad.height);
  for (const stroke of strokes) {
    drawDot(stroke[0]);
    stroke.slice(1).forEach((point, index) => drawLine(stroke[index], point));
  }
}

function drawingChanged() {
  sequence += 1;
  clearTimeout(predictTimer);
  predictionBox.setAttribute("aria-busy", "true"); // the answer shown is for an older drawing
}

pad.addEventListener("pointerdown", (event) => {
  if (activePointer !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  activePointer = event.pointerId;
  drawingChanged();
  const start = padPoint(event);
  strokes.push([start]);
  drawDot(start);
});

pad.addEventListener("pointermove", (event) => {
  if (event.pointerId !== activePointer) return;
  const stroke = strokes[strokes.length - 1];
  // A fast pen moves several times per frame; the coalesced events keep the curve smooth.
  const moves = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const move of moves.length ? moves : [event]) {
    const point = padPoint(move);
    drawLine(stroke[stroke.length - 1], point);
    stroke.push(point);
  }
});

function endStroke(event) {
  if (event.pointerId !== activePointer) return;
  activePointer = null;
  clearTimeout(predictTimer);
  predictTimer = setTimeout(predict, PREDICT_DELAY_MS);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

clearButton.addEventListener("click", () => {
  drawingChanged();
  strokes = [];
  redrawPad();
  showResult(null);
  showMessage("");
});

predictButton.addEventListener("click", () => predict());
showMap.addEventListener("change", () => drawSeen(lastResult));

// --- asking the service ---

function whiteBackedPng() {
  // The pad is transparent where nothing was drawn: paint it onto white paper first.
  const paper = document.createElement("canvas");
  paper.width = pad.width;
  paper.height = pad.height;
  const pen = paper.getContext("2d");
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, paper.width, paper.height);
  pen.drawImage(pad, 0, 0);
  return new Promise((resolve) => paper.toBlob(resolve, "image/png"));
}

async function predict() {
  clearTimeout(predictTimer);
  if (strokes.length === 0) {
    showResult(null);
    showMessage("The pad is blank: draw a digit first.", "error");
    return;
  }
  sequence += 1;
  const mine = sequence;
  predictionBox.setAttribute("aria-busy", "true");
  const started = performance.now();
  let response;
  let body = null;
  try {
    response = await fetch(predictUrl, {
      method: "POST",
      headers: { "Content-Type": "image/png", Accept: "application/json" },
      body: await whiteBackedPng(),
    });
    body = await response.json().catch(() => null);
  } catch (error) {
    if (mine === sequence) {
      showResult(null);
      showMessage("The service cannot be reached: is it running?", "error");
    }
    return;
  }
  if (mine !== sequence) return; // cleared or drawn on since: this answer is for another drawing
  if (!response.ok) {
    showResult(null);
    showMessage(describeError(response.status, body), "error");
    return;
  }
  showResult(body);
  showMessage(`${body.model} v${body.version} answered in ${Math.round(performance.now() - started)} ms.`);
}

function describeError(status, body) {
  const message = body && body.error && body.error.message;
  if (status === 503) {
    return `The service is not ready: ${message || "no model is loaded yet"}. Try again in a moment.`;
  }
  if (message) return `The service could not read the drawing (${status}): ${message}`;
  return `The service answered with status ${status} and no explanation.`;
}

// --- showing the answer ---

function showMessage(text, kind = "info") {
  messageBox.textContent = text;
  messageBox.dataset.kind = kind;
}

function percent(probability) {
  // One decimal, without rounding a near-certainty up to a certainty.
  if (probability > 0.999) return "> 99.9 %";
  if (probability < 0.001) return "< 0.1 %";
  return `${(probability * 100).toFixed(1)} %`;
}

function answerText(result) {
  const sure = percent(result.probability);
  if (result.verdict === "not_a_digit") return `Not a digit (closest: ${result.label}, ${sure})`;
  if (result.verdict === "uncertain") return `${result.label}? (${sure}, uncertain)`;
  return `${result.label} (${sure})`;
}

function showResult(result) {
  lastResult = result;
  predictionBox.setAttribute("aria-busy", "false");
  predictionBox.textContent = result ? answerText(result) : "";
  predictionBox.dataset.verdict = (result && result.verdict) || "";
  const verdict = result && result.verdict;
  verdictBox.hidden = !verdict;
  verdictBox.dataset.verdict = verdict || "";
  verdictBox.textContent = verdict
    ? `${VERDICTS[verdict] || verdict}${result.reason ? `: ${result.reason}` : ""}`
    : "";
  showProbabilities(result);
  drawSeen(result);
}

function showProbabilities(result) {
  const rows = result
    ? Object.entries(result.probabilities).map(([label, probability]) => {
        const row = document.createElement("li");
        row.dataset.label = label;
        if (label === result.label) row.className = "best";
        const name = document.createElement("span");
        name.className = "label";
        name.textContent = label;
        const bar = document.createElement("span");
        bar.className = "bar";
        const fill = document.createElement("span");
        fill.className = "fill";
        fill.style.width = `${probability * 100}%`;
        bar.append(fill);
        const value = document.createElement("span");
        value.className = "value";
        value.textContent = percent(probability);
        row.append(name, bar, value);
        return row;
      })
    : [];
  probabilitiesList.replaceChildren(...rows);
}

function drawSeen(result) {
  seenPen.clearRect(0, 0, seen.width, seen.height);
  seen.classList.toggle("empty", !(result && result.input));
  if (!result || !result.input) return;
  const picture = new Image();
  picture.onload = () => {
    if (result !== lastResult) return;
    seenPen.imageSmoothingEnabled = false; // show the model's pixels as pixels
    seenPen.drawImage(picture, 0, 0, seen.width, seen.height);
    if (showMap.checked && result.explanation) drawMap(result.explanation);
  };
  picture.src = result.input;
}

function drawMap(map) {
  // Red where covering the ink lowers the answer's odds, blue where it raises them; the
  // strongest cell of either sign is fully coloured.
  const strongest = Math.max(...map.flat().map(Math.abs));
  if (!(strongest > 0)) return;
  const cellWidth = seen.width / map[0].length;
  const cellHeight = seen.height / map.length;
  map.forEach((row, y) =>
    row.forEach((value, x) => {
      const strength = Math.abs(value) / strongest;
      if (strength < 0.05) return;
      const colour = value > 0 ? "230, 40, 30" : "40, 110, 240";
      seenPen.fillStyle = `rgba(${colour}, ${(0.75 * strength).toFixed(3)})`;
      seenPen.fillRect(x * cellWidth, y * cellHeight, cellWidth + 0.5, cellHeight + 0.5);
    })
  );
}

// --- readiness ---

async function checkReady() {
  try {
    const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
    if (response.ok) {
      if (messageBox.dataset.kind === "not-ready") showMessage("");
      return;
    }
    const body = await response.json().catch(() => null);
    const missing = body && body.not_ready ? Object.entries(body.not_ready).map(([name, why]) => `${name}: ${why}`) : [];
    showMessage(`The service is not ready yet${missing.length ? ` (${missing.join("; ")})` : ""}.`, "not-ready");
  } catch (error) {
    showMessage("The service cannot be reached: is it running?", "not-ready");
  }
  setTimeout(checkReady, 5000);
}

window.addEventListener("resize", resize);
resize();
showResult(null);
checkReady();
