// BullMQ adapter for bench-poll (Redis).
//   node bullmq.js seed   PEER_URL (redis://...) PEER_NAME (queue) PEER_ROWS
//   node bullmq.js work   PEER_URL PEER_NAME PEER_TARGET PEER_CONCURRENCY
// Completed jobs are removed (removeOnComplete), as its guide advises for high volumes;
// keeping them would add a sorted-set insert per job.
'use strict';
const { Queue, Worker } = require('bullmq');
const { post, ready, payload, env, concurrency } = require('./deliver');

const url = new URL(env('PEER_URL'));
const connection = {
  host: url.hostname, port: Number(url.port || 6379),
  password: url.password || undefined, db: Number(url.pathname.slice(1) || 0),
  maxRetriesPerRequest: null,
};
const name = env('PEER_NAME');

async function seed() {
  const queue = new Queue(name, { connection });
  queue.on('error', (e) => { console.error(e); process.exit(1); });
  const rows = Number(env('PEER_ROWS'));
  for (let start = 1; start <= rows; start += 5000) {
    const jobs = [];
    for (let i = start; i < Math.min(start + 5000, rows + 1); i++) {
      jobs.push({ name: 'deliver', data: payload(i), opts: { removeOnComplete: true } });
    }
    await queue.addBulk(jobs);
  }
  await queue.close();
}

async function work() {
  const worker = new Worker(name, async (job) => post(job.data), { connection, concurrency });
  worker.on('error', (e) => console.error(e));
  await worker.waitUntilReady();
  ready(() => worker.close(true));
}

(process.argv[2] === 'seed' ? seed() : work()).catch((e) => { console.error(e); process.exit(1); });
