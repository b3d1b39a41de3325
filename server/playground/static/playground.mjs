// The playground: draw a digit, put it in MNIST's form (the shared preprocessing module), and ask
// the model — through the server's Open Inference Protocol endpoint, or in this page with
// onnxruntime-web on the model file the server hands out. Both paths return the model's own ONNX
// outputs, which one function turns into a label and probabilities, as the server does.

import { BOX, FRAME, mnistForm } from '/playground/preprocess.mjs';

const API = '/playground/api/models';
const ORT_DIR = '/playground/ort/';
const STROKE_WIDTH = 22;

const pad = document.getElementById('pad');
const seen = document.getElementById('seen');
const padContext = pad.getContext('2d', { willReadFrequently: true });
const state = { model: null, ort: null, session: null, pixels: null, busy: Promise.resolve() };

/** GET a JSON document; an {"error": ...} answer becomes an Error with its message. */
async function getJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.error ?? `${response.status} ${response.statusText}`);
  }
  return body;
}

/** The model named in ?model=NAME, else the first the server serves; its description. */
async function loadModel() {
  const { models, onnxruntime_web: ortAvailable } = await getJson(API);
  if (models.length === 0) {
    throw new Error('this server serves no image classifier');
  }
  const wanted = new URLSearchParams(location.search).get('model');
  const chosen = models.find((m) => m.name === wanted) ?? models[0];
  const model = await getJson(`${API}/${encodeURIComponent(chosen.name)}/versions/${chosen.version}`);
  document.getElementById('model-line').textContent =
    `model '${model.name}' version ${model.version}: ${model.input.name} ` +
    `${model.input.datatype} [${model.input.dims.join(',')}], ${model.class_labels.length} classes`;
  return { model, ortAvailable };
}

/** onnxruntime-web from the server's own files, and a session on the model's bytes. */
async function loadSession(model) {
  const ort = await import(`${ORT_DIR}ort.wasm.min.mjs`);
  ort.env.wasm.wasmPaths = ORT_DIR; // no CDN: the .wasm comes from this server
  ort.env.wasm.numThreads = 1; // threads would need cross-origin isolation headers
  const response = await fetch(model.model_url);
  if (!response.ok) {
    // The server's {"error": ...}, not a protobuf parser's complaint about a JSON body.
    const answer = await response.json().catch(() => ({}));
    throw new Error(answer.error ?? `${model.model_url}: HTTP ${response.status}`);
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  return { ort, session };
}

// --- drawing ---------------------------------------------------------------------------------

function clearPad() {
  padContext.fillStyle = 'black';
  padContext.fillRect(0, 0, pad.width, pad.height);
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * pad.width) / box.width,
    ((event.clientY - box.top) * pad.height) / box.height,
  ];
}

function listenForStrokes() {
  let last = null;
  padContext.strokeStyle = 'white';
  padContext.fillStyle = 'white';
  padContext.lineWidth = STROKE_WIDTH;
  padContext.lineCap = 'round';
  padContext.lineJoin = 'round';
  // Pointer events cover the mouse, touch and pens alike.
  pad.addEventListener('pointerdown', (event) => {
    pad.setPointerCapture(event.pointerId);
    last = padPoint(event);
    padContext.beginPath();
    padContext.arc(last[0], last[1], STROKE_WIDTH / 2, 0, 2 * Math.PI);
    padContext.fillStyle = 'white';
    padContext.fill();
  });
  pad.addEventListener('pointermove', (event) => {
    if (last === null) return;
    const point = padPoint(event);
    padContext.beginPath();
    padContext.moveTo(...last);
    padContext.lineTo(...point);
    padContext.stroke();
    last = point;
  });
  const end = () => {
    if (last === null) return;
    last = null;
    classifyDrawing();
  };
  pad.addEventListener('pointerup', end);
  pad.addEventListener('pointercancel', end);
  document.getElementById('clear').addEventListener('click', () => {
    clearPad();
    state.pixels = null;
    showPixels(new Uint8Array(state.model.height * state.model.width));
    document.getElementById('result').textContent = 'Draw something.';
    document.getElementById('result').dataset.label = '';
    renderBars(null);
    renderTemplates(null);
  });
  for (const input of document.querySelectorAll('input[name=mode]')) {
    input.addEventListener('change', () => state.pixels && classifyDrawing());
  }
}

function mode() {
  return document.querySelector('input[name=mode]:checked').value;
}

/** Preprocess what is on the pad and classify it where the switch says. */
function classifyDrawing() {
  const { height, width } = state.model;
  const image = padContext.getImageData(0, 0, pad.width, pad.height);
  state.pixels = mnistForm(image, [height, width]);
  showPixels(state.pixels);
  const where = mode();
  const pixels = state.pixels;
  // One classification at a time, in order, so the page shows the answer to the last drawing.
  state.busy = state.busy.then(async () => {
    try {
      render(await classify(pixels, where), where);
    } catch (error) {
      showError(error);
    }
  });
  return state.busy;
}

function showPixels(pixels) {
  const { height, width } = state.model;
  seen.width = width;
  seen.height = height;
  const context = seen.getContext('2d');
  const image = context.createImageData(width, height);
  pixels.forEach((value, i) => {
    image.data.set([value, value, value, 255], 4 * i);
  });
  context.putImageData(image, 0, 0);
}

// --- running the model -----------------------------------------------------------------------

/** The ONNX outputs that hold the label, scores and probabilities, each once. */
function onnxOutputs(model) {
  return [...new Set(Object.values(model.outputs).map((o) => o.output))];
}

/**
 * Classify uint8 pixels [count, H, W] where told: 'server' or 'page'.
 * @returns {Promise<{labels: number[], probabilities: Float32Array[]}>}
 */
async function classify(pixels, where, count = 1) {
  const outputs = where === 'server' ? await viaServer(pixels, count) : await inPage(pixels, count);
  return interpret(outputs, count);
}

/** POST the pixels (UINT8, which every image classifier the server serves accepts) as JSON. */
async function viaServer(pixels, count) {
  const { model } = state;
  const body = {
    id: 'playground',
    inputs: [
      {
        name: model.input.name,
        // The model's own input shape ([N,H,W], [N,1,H,W] or [N,H·W]), as inPage feeds it.
        shape: model.input.dims.map((d, i) => (i === 0 ? count : d)),
        datatype: 'UINT8',
        data: Array.from(pixels),
      },
    ],
    outputs: onnxOutputs(model).map((name) => ({ name })),
  };
  const url = `/v2/models/${encodeURIComponent(model.name)}/versions/${model.version}/infer`;
  const answer = await getJson(url, { method: 'POST', body: JSON.stringify(body) });
  return Object.fromEntries(answer.outputs.map((o) => [o.name, o.data]));
}

/** Run model.onnx here, fed as the server feeds it: pixels / (1 / input_scale) in float32. */
async function inPage(pixels, count) {
  const { model, ort, session } = state;
  if (!session) {
    throw new Error('onnxruntime-web is not available on this server (see above)');
  }
  const dims = model.input.dims.map((d, i) => (i === 0 ? count : d));
  let data = pixels;
  if (model.input.datatype !== 'UINT8') {
    const divisor = Math.fround(1 / model.input_scale);
    data = Float32Array.from(pixels, (p) => p / divisor);
  }
  const type = model.input.datatype === 'UINT8' ? 'uint8' : 'float32';
  const feeds = { [model.input.name]: new ort.Tensor(type, data, dims) };
  const results = await session.run(feeds, onnxOutputs(model));
  // int64 outputs arrive as BigInt64Array: labels are small, so Numbers are exact.
  return Object.fromEntries(
    Object.entries(results).map(([name, tensor]) => [
      name,
      tensor.data instanceof BigInt64Array ? Array.from(tensor.data, Number) : tensor.data,
    ]),
  );
}

/** Labels and probabilities from the model's outputs, derived as the server derives them. */
function interpret(outputs, count) {
  const { model } = state;
  const classes = model.class_labels.length;
  const rows = (values) =>
    Array.from({ length: count }, (_, i) => Array.from(values.slice(i * classes, (i + 1) * classes)));
  const source = model.outputs.probabilities ?? model.outputs.scores;
  let probabilities = null;
  if (source) {
    const values = rows(outputs[source.output]);
    if (source.holds === 'probabilities') probabilities = values;
    else if (source.holds === 'log_probabilities') probabilities = values.map((r) => r.map(Math.exp));
    else probabilities = values.map(softmax);
  }
  const label = model.outputs.label;
  const labels =
    label.holds === 'label'
      ? Array.from(outputs[label.output], Number)
      : rows(outputs[label.output]).map(argmax);
  return { labels, probabilities: probabilities?.map((r) => Float32Array.from(r)) ?? null };
}

function softmax(scores) {
  const top = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

function argmax(values) {
  return values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
}

// --- showing the answer ----------------------------------------------------------------------

function render(result, where) {
  state.last = result;
  const label = result.labels[0];
  const name = state.model.class_labels[label];
  const node = document.getElementById('result');
  node.className = ''; // an earlier error's warning style does not outlive it
  node.dataset.label = String(label);
  node.dataset.mode = where;
  node.innerHTML = '';
  node.append('It reads ', Object.assign(document.createElement('strong'), { textContent: name }));
  const probability = result.probabilities?.[0]?.[label];
  const place = where === 'server' ? 'through the server' : 'in this page';
  node.append(
    probability === undefined ? ` (${place})` : ` with p = ${probability.toFixed(3)} (${place})`,
  );
  renderBars(result.probabilities?.[0] ?? null, label);
  renderTemplates(label);
}

function renderBars(probabilities, winner) {
  const bars = document.getElementById('bars');
  bars.innerHTML = '';
  state.model.class_labels.forEach((name, i) => {
    const value = probabilities ? probabilities[i] : 0;
    const bar = document.createElement('div');
    bar.className = `bar${i === winner ? ' winner' : ''}`;
    bar.setAttribute('role', 'listitem');
    bar.innerHTML =
      `<span class="name"></span><span class="track"><span class="fill"></span></span>` +
      `<span class="value"></span>`;
    bar.querySelector('.name').textContent = name;
    bar.querySelector('.fill').style.width = `${(100 * value).toFixed(1)}%`;
    bar.querySelector('.fill').style.display = 'block';
    bar.querySelector('.value').textContent = probabilities ? value.toFixed(3) : '';
    bars.append(bar);
  });
}

/** Diverging colours: blue for negative, white for zero, red for positive. */
function heat(value) {
  const v = Math.max(-1, Math.min(1, value));
  const fade = Math.round(255 * (1 - Math.abs(v)));
  return v >= 0 ? [255, fade, fade] : [fade, fade, 255];
}

function renderTemplates(winner) {
  const { model } = state;
  const holder = document.getElementById('templates');
  holder.innerHTML = '';
  if (!model.templates) {
    document.getElementById('templates-note').textContent =
      'This model is not the article\'s kind (an initializer "weights" [C,H,W]): it has no ' +
      'weight templates to show.';
    return;
  }
  const { height, width } = model;
  model.templates.forEach((template, c) => {
    const flat = template.flat();
    const scale = Math.max(...flat.map(Math.abs)) || 1;
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    canvas.className = 'pixels';
    const context = canvas.getContext('2d');
    const image = context.createImageData(width, height);
    const pushed = c === winner && state.pixels ? contributions(flat) : null;
    flat.forEach((w, i) => {
      let rgb = heat(w / scale);
      if (pushed && pushed[i] > 0) {
        // The drawn pixels that pushed the winner, in yellow, as strongly as they pushed.
        const a = Math.min(1, pushed[i]);
        rgb = [rgb[0] + a * (255 - rgb[0]), rgb[1] + a * (214 - rgb[1]), rgb[2] * (1 - a)];
      }
      image.data.set([...rgb.map(Math.round), 255], 4 * i);
    });
    context.putImageData(image, 0, 0);
    const tile = document.createElement('div');
    tile.className = `template${c === winner ? ' winner' : ''}`;
    tile.append(canvas, model.class_labels[c]);
    holder.append(tile);
  });
}

/** Each pixel's part in the winner's score, x·w, scaled so the largest push is 1. */
function contributions(weights) {
  const values = weights.map((w, i) => (state.pixels[i] / 255) * w);
  const top = Math.max(...values);
  return values.map((v) => (top > 0 ? v / top : 0));
}

function showError(error) {
  const node = document.getElementById('result');
  node.textContent = error.message;
  node.className = 'warning';
  // No answer now: the last one must not stay readable in the page's data.
  node.dataset.label = '';
  delete node.dataset.mode;
  state.last = null;
}

/** The note under "What the model sees", in the model's own image size. */
function describeFraming({ height, width }) {
  const box = `${Math.round((width * BOX) / FRAME)}×${Math.round((height * BOX) / FRAME)}`;
  document.getElementById('framing').textContent =
    `Cropped to the ink, fitted into ${box} and centred by mass in ${width}×${height}, as ` +
    "MNIST's digits were (docs/preprocessing.md).";
}

// --- start -----------------------------------------------------------------------------------

async function start() {
  const { model, ortAvailable } = await loadModel();
  state.model = model;
  describeFraming(model);
  clearPad();
  showPixels(new Uint8Array(model.height * model.width));
  renderBars(null);
  renderTemplates(null);
  listenForStrokes();
  const note = document.getElementById('ort-note');
  if (ortAvailable) {
    Object.assign(state, await loadSession(model));
    note.textContent = 'In this page: onnxruntime-web runs model.onnx from this server.';
  } else {
    document.querySelector('input[name=mode][value=page]').disabled = true;
    note.className = 'note warning';
    note.textContent =
      'onnxruntime-web is not installed on this server, so "in this page" is off: run ' +
      '`make playground` in the scratchnet source tree and reload.';
  }
}

const ready = start().catch((error) => {
  showError(error);
  throw error;
});

// What the browser tests drive: classify pixels where told, or score many images in the page.
window.playground = {
  ready,
  get last() {
    return state.last;
  },
  get pixels() {
    return state.pixels;
  },
  classifyDrawing,
  setMode(where) {
    document.querySelector(`input[name=mode][value=${where}]`).checked = true;
  },
  /** Labels of `count` uint8 images [count, H, W] in `pixels`, `batch` at a time. */
  async labels(pixels, count, where, batch = 1000) {
    const size = state.model.height * state.model.width;
    const labels = [];
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const part = pixels.subarray(start * size, (start + n) * size);
      labels.push(...(await classify(part, where, n)).labels);
    }
    return labels;
  },
};
