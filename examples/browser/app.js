// The browser example's module: loads a kd student from ./models/<name>/ with transformers.js's defaults (in a browser:
// device wasm, dtype q8, i.e. onnx/model_quantized.onnx), local files only, and classifies each line the user types,
// showing every label's score and the time per text. window.kdDemo exposes the same calls (the browser test uses them).
import { env, pipeline } from './transformers/transformers.js';

const here = new URL('.', import.meta.url);
env.allowLocalModels = true;
env.allowRemoteModels = false; // no Hugging Face Hub, no CDN: every file comes from this server
// A path, not a full URL: transformers.js 4.3 treats an http(s) localModelPath as remote when it checks which files a
// model has, and with remote models off it would then skip the tokenizer.
env.localModelPath = new URL('models/', here).pathname;
// Fetch the students afresh (a retrained student in the same folder must not come from the Cache API).
env.useBrowserCache = false;
// onnxruntime-web's .wasm/.mjs files from this server instead of transformers.js's default, a CDN.
env.backends.onnx.wasm.wasmPaths = new URL('wasm/', here).href;

const $ = (id) => document.getElementById(id);
const status = (text, state) => {
  $('status').textContent = text;
  $('status').dataset.state = state;
};

/** @type {{ name: string, classify: Function, loadMs: number } | undefined} */
let student;
// ?dtype=fp32 loads onnx/model.onnx instead (to compare); without it the pipeline gets no options at all.
const dtype = new URLSearchParams(location.search).get('dtype') ?? undefined;

/**
 * Loads the student in ./models/<name>/ with the pipeline's default options (no dtype, no device; ?dtype= overrides).
 * @param {string} name - a folder under models/
 * @returns {Promise<{ name: string, loadMs: number }>}
 */
async function load(name) {
  status(`Loading ${name}…`, 'loading');
  $('classify').disabled = true;
  document.body.dataset.ready = '';
  if (student) await student.classify.dispose();
  student = undefined;
  const started = performance.now();
  try {
    const classify = await pipeline('text-classification', name, dtype ? { dtype } : undefined);
    student = { name, classify, loadMs: performance.now() - started };
  } catch (e) {
    status(`Could not load ${name}: ${e instanceof Error ? e.message : e}`, 'error');
    throw e;
  }
  status(`${name} loaded in ${student.loadMs.toFixed(0)} ms (${dtype ?? 'int8'}, onnxruntime-web wasm)`, 'ready');
  $('classify').disabled = false;
  document.body.dataset.ready = name;
  return { name, loadMs: student.loadMs };
}

/**
 * Classifies each text on its own (one pipeline call per text, as when typing), timing each call.
 * @param {string[]} texts
 * @returns {Promise<{ text: string, label: string, scores: { label: string, score: number }[], ms: number }[]>}
 *   `scores` holds every label, best first; `label` is the best one
 */
async function classify(texts) {
  if (!student) throw new Error('no student loaded yet');
  const rows = [];
  for (const text of texts) {
    const started = performance.now();
    const scores = await student.classify(text, { top_k: null });
    rows.push({ text, label: scores[0].label, scores, ms: performance.now() - started });
  }
  return rows;
}

/**
 * Throughput in this page: `texts` one call per text, and all of them in calls of `batch` texts.
 * @param {string[]} texts
 * @param {number} batch
 * @returns {Promise<{ single: number, batched: number, texts: number }>} texts per second each way
 */
async function benchmark(texts, batch = 32) {
  if (!student) throw new Error('no student loaded yet');
  let started = performance.now();
  for (const text of texts) await student.classify(text);
  const single = texts.length / ((performance.now() - started) / 1000);
  started = performance.now();
  for (let i = 0; i < texts.length; i += batch) await student.classify(texts.slice(i, i + batch));
  const batched = texts.length / ((performance.now() - started) / 1000);
  return { single, batched, texts: texts.length };
}

function render(rows) {
  const body = $('results').tBodies[0];
  body.replaceChildren();
  for (const row of rows) {
    const tr = body.insertRow();
    tr.dataset.label = row.label;
    // Full-precision scores for whoever reads the page programmatically; the cells show 4 digits.
    tr.dataset.scores = JSON.stringify(row.scores);
    const text = tr.insertCell();
    text.className = 'text';
    text.textContent = row.text || '(empty)';
    tr.insertCell().textContent = row.label;
    const scores = tr.insertCell();
    for (const { label, score } of row.scores) {
      const line = document.createElement('div');
      line.className = label === row.label ? 'score top' : 'score';
      const bar = document.createElement('span');
      bar.className = 'bar';
      bar.style.width = `${(score * 8).toFixed(2)}em`;
      line.append(bar, `${label} ${score.toFixed(4)}`);
      scores.append(line);
    }
    const ms = tr.insertCell();
    ms.className = 'ms';
    ms.textContent = row.ms.toFixed(2);
  }
  $('results').hidden = rows.length === 0;
}

let pending = Promise.resolve();
/** Classifies the textarea's lines and shows them (calls queue, so the table always shows the latest text). */
function classifyTyped() {
  pending = pending.then(async () => {
    if (!student) return;
    const texts = $('texts')
      .value.split('\n')
      .filter((line) => line.trim() !== '');
    const rows = await classify(texts);
    render(rows);
    const total = rows.reduce((sum, r) => sum + r.ms, 0);
    status(`${student.name}: ${rows.length} texts in ${total.toFixed(1)} ms`, 'ready');
    document.body.dataset.classified = String(Number(document.body.dataset.classified ?? 0) + 1);
  });
  return pending;
}

async function start() {
  const wanted = new URLSearchParams(location.search).get('model');
  let names = [];
  // serve.mjs lists its students at models.json; another static server may not, then ?model= names one.
  const listing = await fetch(new URL('models.json', here)).catch(() => undefined);
  if (listing?.ok) names = await listing.json();
  if (wanted && !names.includes(wanted)) names.unshift(wanted);
  for (const name of names) $('model').add(new Option(name, name));
  if (names.length === 0) {
    status('No student found: serve a folder of students (serve.mjs --models DIR) or add ?model=NAME', 'error');
    return;
  }
  $('model').value = wanted ?? names[0];
  $('model').addEventListener('change', () => load($('model').value).then(classifyTyped));
  $('classify').addEventListener('click', classifyTyped);
  let timer;
  $('texts').addEventListener('input', () => {
    if (!$('live').checked) return;
    clearTimeout(timer);
    timer = setTimeout(classifyTyped, 150);
  });
  await load($('model').value);
  await classifyTyped();
}

const ready = start();
window.kdDemo = {
  ready,
  load,
  classify,
  classifyTyped,
  benchmark,
  student: () => student && { name: student.name, loadMs: student.loadMs },
};
