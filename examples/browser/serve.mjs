// A tiny static server for the browser example (node:http, 127.0.0.1 only): the page, transformers.js's browser build,
// onnxruntime-web's wasm files and a folder of students, each from where npm put it, so the page needs no bundler and no
// network. Usage: node examples/browser/serve.mjs --models DIR [--port N] (port 0 or none: a free one).
import { createServer } from 'node:http';
import { createReadStream, existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.onnx_data': 'application/octet-stream',
  '.map': 'application/json; charset=utf-8',
};

/**
 * Where the page's three kinds of files come from: transformers.js's self-contained browser build (the `dist` folder
 * that holds `transformers.js`, with onnxruntime-web bundled in), the wasm files of the same onnxruntime-web version,
 * and the students.
 * @param {string} models - the folder whose subfolders are students (each an HF-layout folder with config.json)
 * @returns {{ transformers: string, wasm: string, models: string, page: string, versions: { transformers: string, ort: string } }}
 * @throws Error when the packages are missing or onnxruntime-web's version is not the one transformers.js was built with
 */
export function resolveRoots(models) {
  const transformersEntry = fileURLToPath(import.meta.resolve('@huggingface/transformers'));
  const transformersDist = dirname(transformersEntry);
  const transformersPackage = join(transformersDist, '..', 'package.json');
  const tjs = JSON.parse(readFileSync(transformersPackage, 'utf8'));
  // onnxruntime-web as transformers.js itself resolves it (hoisted or nested).
  const ortEntry = createRequire(transformersPackage).resolve('onnxruntime-web');
  const ortDist = dirname(ortEntry);
  const ort = JSON.parse(readFileSync(join(ortDist, '..', 'package.json'), 'utf8'));
  const wanted = tjs.dependencies?.['onnxruntime-web'];
  // transformers.js pins an exact version; its bundle and the wasm files must come from the same build.
  if (wanted && wanted !== ort.version)
    throw new Error(`onnxruntime-web ${ort.version} is installed but transformers.js ${tjs.version} was built with ${wanted}: run npm ci`);
  if (!existsSync(join(transformersDist, 'transformers.js'))) throw new Error(`no transformers.js in ${transformersDist}`);
  if (!existsSync(models) || !statSync(models).isDirectory()) throw new Error(`--models ${models}: not a folder`);
  return {
    transformers: transformersDist,
    wasm: ortDist,
    models: realpathSync(models),
    page: HERE,
    versions: { transformers: tjs.version, ort: ort.version },
  };
}

/** The students under `models`: subfolders (or links to folders) with a config.json, which the page offers in its list. */
function listModels(models) {
  return readdirSync(models)
    .filter((name) => existsSync(join(models, name, 'config.json')))
    .sort();
}

/** `root` + the URL path below a prefix, or undefined when it would leave `root` (`..`, encoded or not). */
function inside(root, rest) {
  let decoded;
  try {
    decoded = decodeURIComponent(rest);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0')) return undefined;
  const path = resolve(root, '.' + sep + decoded);
  return path === root || path.startsWith(root + sep) ? path : undefined;
}

/**
 * Starts the server on 127.0.0.1. `/` and `/app.js`: the page; `/transformers/…`: transformers.js's dist folder;
 * `/wasm/…`: onnxruntime-web's dist folder; `/models/…`: the students; `/models.json`: their names.
 * Responses carry COOP/COEP headers so the page is cross-origin isolated (onnxruntime-web may then use threads).
 * @param {{ models: string, port?: number }} options
 * @returns {Promise<{ url: string, close: () => Promise<void>, roots: ReturnType<typeof resolveRoots> }>}
 */
export async function startServer({ models, port = 0 }) {
  const roots = resolveRoots(models);
  const mounts = [
    ['/transformers/', roots.transformers],
    ['/wasm/', roots.wasm],
    ['/models/', roots.models],
  ];
  const server = createServer((req, res) => {
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    let file;
    if (url.pathname === '/' || url.pathname === '/index.html') file = join(roots.page, 'index.html');
    else if (url.pathname === '/app.js') file = join(roots.page, 'app.js');
    else if (url.pathname === '/models.json') {
      res.writeHead(200, { ...headers, 'Content-Type': TYPES['.json'], 'Cache-Control': 'no-store' });
      res.end(JSON.stringify(listModels(roots.models)));
      return;
    } else {
      const mount = mounts.find(([prefix]) => url.pathname.startsWith(prefix));
      if (mount) file = inside(mount[1], url.pathname.slice(mount[0].length));
    }
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { ...headers, 'Content-Type': TYPES['.txt'] }).end(`not found: ${url.pathname}\n`);
      return;
    }
    res.writeHead(200, {
      ...headers,
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': statSync(file).size,
      'Cache-Control': 'no-cache',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', ok);
  });
  const address = server.address();
  return {
    url: `http://127.0.0.1:${address.port}/`,
    roots,
    close: () => new Promise((ok) => server.close(() => ok())),
  };
}

function parseArgs(argv) {
  const options = { models: undefined, port: 0 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === '--models' && value !== undefined) ((options.models = value), i++);
    else if (arg === '--port' && value !== undefined) {
      const port = Number(value);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be an integer in 0..65535, got ${value}`);
      options.port = port;
      i++;
    } else throw new Error(`unknown argument '${arg}'. Usage: node examples/browser/serve.mjs --models DIR [--port N]`);
  }
  if (!options.models) throw new Error('--models DIR is required: the folder whose subfolders are students');
  return options;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const { url, roots } = await startServer(parseArgs(process.argv.slice(2)));
    // The first line is the URL (the browser test reads it); then what is served.
    console.log(url);
    console.log(`transformers.js ${roots.versions.transformers}, onnxruntime-web ${roots.versions.ort}; students in ${roots.models}`);
    const names = listModels(roots.models);
    for (const name of names) console.log(`  ${url}?model=${encodeURIComponent(name)}`);
    if (names.length === 0) console.log('  (no student folders with a config.json there yet)');
  } catch (e) {
    console.error(`serve.mjs: error: ${e instanceof Error ? e.message : e}`);
    process.exit(2);
  }
}
