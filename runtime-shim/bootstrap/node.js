// kipper-shim node worker. Embedded in the kipper-shim binary and written out at start.
// Connects to the shim's unix socket, loads the handler as CONTRACT section 1 says,
// then answers framed INVOKE messages (see runtime-shim/src/protocol.rs).
'use strict';
const net = require('net');
const fs = require('fs');
const util = require('util');
const { pathToFileURL } = require('url');
const { AsyncLocalStorage } = require('async_hooks');

const INVOKE = 1, RESULT = 2, LOG = 4, PING = 5, PONG = 6, UNSTARTED = 7, READY = 10, LOAD_FAILED = 11;
const FLAG_EVENT = 1, FLAG_BATCH = 2;
const CT_NONE = 0, CT_JSON = 1, CT_TEXT = 2, CT_OCTET = 3;
const FN_PATH = process.env.KIPPER_FUNCTION_PATH;
const EVENT_TRIGGER = process.env.KIPPER_TRIGGER || 'http';

const sock = net.createConnection(process.env.KIPPER_SHIM_SOCKET);
sock.setNoDelay(true);
const invocation = new AsyncLocalStorage();

// Frames produced during one turn of the event loop go out in one write.
let out = [];
let flushQueued = false;
function flush() {
  flushQueued = false;
  const chunks = out;
  out = [];
  sock.write(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
}
function emit(buf) {
  out.push(buf);
  if (!flushQueued) { flushQueued = true; setImmediate(flush); }
}
function frame(kind, id, payload) {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b.writeUInt32LE(5 + payload.length, 0);
  b[4] = kind;
  b.writeUInt32LE(id, 5);
  payload.copy(b, 9);
  return b;
}

// console.* become LOG frames tagged with the invocation that printed them.
function logger(stream) {
  return (...args) => {
    const id = invocation.getStore() || 0;
    const text = Buffer.from(util.format(...args), 'utf8');
    const p = Buffer.allocUnsafe(1 + text.length);
    p[0] = stream;
    text.copy(p, 1);
    emit(frame(LOG, id, p));
  };
}
console.log = console.info = console.debug = console.trace = logger(1);
console.warn = console.error = logger(2);
// The stack of a thrown exception: stream 3, which the shim logs at ERROR.
const thrown = logger(3);

function result(id, status, ct, headers, body) {
  const hb = headers ? Buffer.from(headers, 'utf8') : null;
  const hl = hb ? hb.length : 0;
  const bl = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  const b = Buffer.allocUnsafe(16 + hl + bl);
  b.writeUInt32LE(12 + hl + bl, 0);
  b[4] = RESULT;
  b.writeUInt32LE(id, 5);
  b.writeUInt16LE(status, 9);
  b[11] = ct;
  b.writeUInt32LE(hl, 12);
  if (hb) hb.copy(b, 16);
  if (typeof body === 'string') b.write(body, 16 + hl, 'utf8'); else body.copy(b, 16 + hl);
  emit(b);
}

function errorMessage(e) {
  if (e instanceof Error) return e.message;
  return typeof e === 'string' ? e : util.inspect(e);
}
function fail(id, e) {
  invocation.run(id, () => thrown(e instanceof Error && e.stack ? e.stack : util.inspect(e)));
  result(id, 500, CT_JSON, null, JSON.stringify({ error: errorMessage(e) }));
}

function mapResult(id, v) {
  if (v !== null && typeof v === 'object' && typeof v.statusCode === 'number' && !Buffer.isBuffer(v)) {
    const status = v.statusCode;
    if (!Number.isInteger(status) || status < 100 || status > 999) {
      return fail(id, new Error(`handler returned an invalid statusCode ${status}`));
    }
    let ct = CT_NONE, hdrs = '';
    const h = v.headers;
    let hasCt = false;
    if (h && typeof h === 'object') {
      for (const k of Object.keys(h)) {
        const val = h[k];
        if (val === undefined || val === null) continue;
        const name = k.toLowerCase();
        if (name === 'content-type') hasCt = true;
        hdrs += name + ':' + String(val).replace(/[\r\n]/g, ' ') + '\n';
      }
    }
    const body = v.body;
    let bytes;
    if (body === undefined || body === null) { bytes = ''; }
    else if (typeof body === 'string') { bytes = body; if (!hasCt) ct = CT_TEXT; }
    else if (Buffer.isBuffer(body)) { bytes = body; if (!hasCt) ct = CT_OCTET; }
    else { bytes = JSON.stringify(body); if (!hasCt) ct = CT_JSON; }
    return result(id, status, ct, hdrs, bytes);
  }
  if (typeof v === 'string') return result(id, 200, CT_TEXT, null, v);
  if (Buffer.isBuffer(v)) return result(id, 200, CT_OCTET, null, v);
  const json = v === undefined ? '{"ok":true}' : JSON.stringify(v);
  return result(id, 200, CT_JSON, null, json === undefined ? '{"ok":true}' : json);
}

// Batch mode: status = exit code, body = the result as JSON.
function batchResult(id, v) {
  const json = JSON.stringify(v === undefined ? null : v);
  const failed = v !== null && typeof v === 'object' &&
    ((typeof v.statusCode === 'number' && v.statusCode >= 400) || Boolean(v.error));
  result(id, failed ? 1 : 0, CT_JSON, null, json === undefined ? 'null' : json);
}
function batchFail(id, e) {
  invocation.run(id, () => thrown(e instanceof Error && e.stack ? e.stack : util.inspect(e)));
  result(id, 1, CT_JSON, null, JSON.stringify({ error: errorMessage(e) }));
}

function parseHeaders(s) {
  const h = {};
  if (s.length === 0) return h;
  let start = 0;
  while (start < s.length) {
    let nl = s.indexOf('\n', start);
    if (nl < 0) nl = s.length;
    const colon = s.indexOf(':', start);
    if (colon > start && colon < nl) {
      const k = s.slice(start, colon), v = s.slice(colon + 1, nl);
      h[k] = h[k] === undefined ? v : h[k] + ', ' + v;
    }
    start = nl + 1;
  }
  return h;
}
function parseQuery(q) {
  if (q.length === 0) return {};
  const o = {};
  for (const [k, v] of new URLSearchParams(q)) o[k] = o[k] === undefined ? v : [].concat(o[k], v);
  return o;
}

let handler = null;
// How long an exiting worker waits for the shim to stop writing to it.
const EXIT_DRAIN_MS = 5;
const EMPTY = Buffer.alloc(0);

function invoke(buf, pos, id) {
  const flags = buf[pos], bodyKind = buf[pos + 1];
  const deadline = Number(buf.readBigUInt64LE(pos + 2));
  const ml = buf.readUInt16LE(pos + 10), pl = buf.readUInt16LE(pos + 12);
  const ql = buf.readUInt32LE(pos + 14), hl = buf.readUInt32LE(pos + 18);
  const rl = buf.readUInt16LE(pos + 22), bl = buf.readUInt32LE(pos + 24);
  let p = pos + 28;
  const method = buf.latin1Slice(p, p += ml);
  const path = buf.utf8Slice(p, p += pl);
  const query = buf.utf8Slice(p, p += ql);
  const headers = buf.latin1Slice(p, p += hl);
  const requestId = buf.latin1Slice(p, p += rl);
  const batch = (flags & FLAG_BATCH) !== 0;
  let event = null;
  if (bodyKind !== 0) {
    const text = buf.utf8Slice(p, p + bl);
    if (bodyKind === 1) {
      try { event = JSON.parse(text); } catch (e) {
        return result(id, 400, CT_JSON, null, JSON.stringify({ error: 'request body is not valid JSON: ' + e.message }));
      }
    } else event = text;
  }
  const context = {
    method, path, query: parseQuery(query), headers: parseHeaders(headers),
    trigger: (flags & FLAG_EVENT) ? EVENT_TRIGGER : 'http', requestId, deadline,
  };
  const ok = batch ? batchResult : mapResult;
  const ko = batch ? batchFail : fail;
  invocation.run(id, () => {
    let r;
    try { r = handler(event, context); } catch (e) { return ko(id, e); }
    if (r !== null && typeof r === 'object' && typeof r.then === 'function') {
      r.then((v) => { try { ok(id, v); } catch (e) { ko(id, e); } }, (e) => ko(id, e));
    } else {
      try { ok(id, r); } catch (e) { ko(id, e); }
    }
  });
}

// Chunks of an incomplete frame wait in `parts` until the whole frame is
// there, then are joined once (a large body arrives in many chunks).
let parts = [];
let partsLen = 0;
let need = 9;
// While a chunk's frames are being invoked: the chunk, where its next frame
// starts and where its complete frames end (see the 'exit' handler below).
let curBuf = null, curNext = 0, curEnd = 0;
function onData(chunk) {
  parts.push(chunk);
  partsLen += chunk.length;
  if (partsLen < need) return;
  const buf = parts.length === 1 ? parts[0] : Buffer.concat(parts, partsLen);
  parts = [];
  partsLen = 0;
  let pos = 0;
  const n = buf.length;
  while (n - pos >= 9) {
    const len = buf.readUInt32LE(pos);
    const end = pos + 4 + len;
    if (end > n) break;
    const kind = buf[pos + 4];
    curBuf = buf; curNext = end; curEnd = n;
    if (kind === INVOKE) invoke(buf, pos + 9, buf.readUInt32LE(pos + 5));
    // Answered from the event loop: no answer means a handler is blocking it.
    else if (kind === PING) emit(frame(PONG, buf.readUInt32LE(pos + 5), EMPTY));
    pos = end;
  }
  curBuf = null;
  need = 9;
  if (pos < n) {
    const rest = buf.subarray(pos);
    parts.push(rest);
    partsLen = rest.length;
    if (rest.length >= 4) need = 4 + rest.readUInt32LE(0);
  }
}

function pick(mod) {
  if (typeof mod === 'function') return mod;
  if (mod && typeof mod.default === 'function') return mod.default;
  if (mod && typeof mod.handler === 'function') return mod.handler;
  if (mod && mod.default && typeof mod.default === 'object') {
    if (typeof mod.default.default === 'function') return mod.default.default;
    if (typeof mod.default.handler === 'function') return mod.default.handler;
  }
  throw new Error(`${FN_PATH} exports no handler: use module.exports = async (event, context) => ..., module.exports.default or module.exports.handler`);
}

// NODE_PATH serves require(); ESM `import` ignores it, so when dependencies were
// installed outside the (read-only) handler folder, a resolve hook retries a
// bare specifier that was not found from the installed node_modules.
function registerDepsResolver() {
  const dir = process.env.KIPPER_NODE_MODULES;
  const mod = require('module');
  if (!dir || typeof mod.register !== 'function') return;
  const parent = pathToFileURL(require('path').join(dir, '..', 'kipper-deps.js')).href;
  const hook = `export async function resolve(specifier, context, next) {
  try { return await next(specifier, context); } catch (e) {
    const bare = !specifier.startsWith('.') && !specifier.startsWith('/') && !specifier.includes(':');
    if (bare && e && e.code === 'ERR_MODULE_NOT_FOUND') return next(specifier, { ...context, parentURL: ${JSON.stringify(parent)} });
    throw e;
  }
}`;
  mod.register('data:text/javascript,' + encodeURIComponent(hook));
}

// Whether Node treats the handler as an ES module: .mjs, or .js under a
// package.json with "type": "module" (the nearest one decides).
function isEsm(file) {
  if (file.endsWith('.mjs')) return true;
  if (!file.endsWith('.js')) return false;
  const path = require('path');
  const fs = require('fs');
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).type === 'module';
    } catch (e) {
      if (e.code !== 'ENOENT') return false;
    }
    if (path.dirname(dir) === dir) return false;
  }
}

async function load() {
  registerDepsResolver();
  // ES modules go through import(), the path the resolve hook applies to.
  if (isEsm(FN_PATH)) return pick(await import(pathToFileURL(FN_PATH).href));
  try {
    return pick(require(FN_PATH));
  } catch (e) {
    if (e && (e.code === 'ERR_REQUIRE_ESM' || e.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
      return pick(await import(pathToFileURL(FN_PATH).href));
    }
    throw e;
  }
}

sock.on('connect', () => {
  load().then((h) => {
    handler = h;
    sock.on('data', onData);
    emit(frame(READY, 0, Buffer.alloc(0)));
  }, (e) => {
    const msg = e instanceof Error ? (e.stack || e.message) : util.inspect(e);
    sock.end(frame(LOAD_FAILED, 0, Buffer.from(msg, 'utf8')));
  });
});
// A handler called process.exit(): before the process goes, send what has
// finished (answers wait in `out` for the next turn of the event loop) and
// hand back every invocation written to this worker that it never started
// (the rest of the current chunk, and what waits unread in the socket), so
// the shim sends them to another worker instead of failing them with this one.
process.on('exit', () => {
  const fd = sock._handle && sock._handle.fd;
  if (typeof fd !== 'number' || fd < 0) return;
  // First say so (UNSTARTED with id 0): the shim stops writing to this worker.
  // What it wrote before reading that is drained below, after a short wait.
  try { fs.writeSync(fd, frame(UNSTARTED, 0, EMPTY)); } catch (e) { return; }
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, EXIT_DRAIN_MS);
  const rest = curBuf !== null ? [curBuf.subarray(curNext)] : parts.slice();
  try {
    for (;;) {
      const b = Buffer.allocUnsafe(1 << 16);
      const got = fs.readSync(fd, b, 0, b.length, null);
      if (got <= 0) break;
      rest.push(b.subarray(0, got));
    }
  } catch (e) { /* EAGAIN: nothing more is waiting */ }
  const buf = Buffer.concat(rest);
  for (let p = 0; buf.length - p >= 9;) {
    const e = p + 4 + buf.readUInt32LE(p);
    if (e > buf.length) break;
    if (buf[p + 4] === INVOKE) out.push(frame(UNSTARTED, buf.readUInt32LE(p + 5), EMPTY));
    p = e;
  }
  if (out.length === 0) return;
  try { fs.writeSync(fd, Buffer.concat(out)); } catch (e) { /* the shim is gone */ }
});
// The shim closed the socket (shutdown, or it died): exit with it.
sock.on('close', () => process.exit(0));
sock.on('error', () => process.exit(0));
process.on('unhandledRejection', (e) => { console.error('unhandled rejection:', e); });
