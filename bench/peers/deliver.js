// Shared by the queue adapters (graphile-worker.js, pg-boss.js, bullmq.js): how a job reaches
// the no-op handler, and the protocol with bench-poll.
//   - POST the job's payload to PEER_TARGET over keep-alive connections (as many as the
//     worker's concurrency), timing each POST; with PEER_TARGET empty the job is a no-op in
//     the worker process itself.
//   - print "ready" once the worker runs (bench-poll starts its clock there);
//   - on SIGTERM, print {"p50_ms", "p99_ms", "posts"} of the POSTs and exit.
'use strict';
const http = require('http');

const target = process.env.PEER_TARGET ? new URL(process.env.PEER_TARGET) : null;
const concurrency = Number(process.env.PEER_CONCURRENCY || 64);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
const durations = [];

function post(payload) {
  if (!target) return Promise.resolve();
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent, host: target.hostname, port: target.port, path: target.pathname, method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => {
          durations.push(Number(process.hrtime.bigint() - started) / 1e6);
          if (res.statusCode >= 200 && res.statusCode < 300) resolve();
          else reject(new Error(`handler answered ${res.statusCode}`));
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function quantile(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null;
}

// `stop` releases the queue's connections; the figures are printed first so a slow stop
// cannot lose them.
function ready(stop) {
  process.on('SIGTERM', async () => {
    const sorted = durations.slice().sort((a, b) => a - b);
    process.stdout.write(JSON.stringify({
      p50_ms: quantile(sorted, 0.5), p99_ms: quantile(sorted, 0.99), posts: sorted.length,
    }) + '\n');
    try { await stop(); } finally { process.exit(0); }
  });
  process.stdout.write('ready\n');
}

// The seeded payloads: the same small JSON rows bench-poll's own sources hold.
function payload(i) {
  return { id: i, customer: `c${i}`, amount: Number(`${i % 10000}.${String(i % 100).padStart(2, '0')}`), status: 'pending' };
}

function env(name) {
  const value = process.env[name];
  if (!value) { console.error(`${name} is not set (bench-poll sets it)`); process.exit(2); }
  return value;
}

module.exports = { post, ready, payload, env, concurrency };
