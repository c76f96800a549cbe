// pg-boss adapter for bench-poll (PostgreSQL; fetches with SKIP LOCKED).
//   node pg-boss.js seed   PEER_URL PEER_NAME (schema and queue) PEER_ROWS
//   node pg-boss.js work   PEER_URL PEER_NAME PEER_TARGET PEER_CONCURRENCY PEER_BATCH
// pg-boss 10 has no per-worker concurrency: a work() loop fetches batchSize jobs, runs its
// handler, completes them in one statement, then waits out pollingIntervalSeconds (at least
// 0.5 s) before the next fetch even after a full batch. So: 4 loops of PEER_BATCH jobs, each
// batch POSTed at once over PEER_CONCURRENCY connections (the agent queues the rest).
'use strict';
const PgBoss = require('pg-boss');
const { post, ready, payload, env } = require('./deliver');

const name = env('PEER_NAME');
const boss = new PgBoss({
  connectionString: env('PEER_URL'), schema: name, max: 8,
  supervise: false, schedule: false, migrate: true,
});
boss.on('error', (e) => console.error(e));

async function seed() {
  await boss.start();
  await boss.createQueue(name);
  const rows = Number(env('PEER_ROWS'));
  for (let start = 1; start <= rows; start += 5000) {
    const jobs = [];
    for (let i = start; i < Math.min(start + 5000, rows + 1); i++) jobs.push({ name, data: payload(i) });
    await boss.insert(jobs);
  }
  await boss.stop({ graceful: false, wait: true });
}

async function work() {
  await boss.start();
  const batchSize = Number(process.env.PEER_BATCH || 500);
  for (let i = 0; i < 4; i++) {
    await boss.work(name, { batchSize, pollingIntervalSeconds: 0.5 },
      (jobs) => Promise.all(jobs.map((job) => post(job.data))));
  }
  ready(() => boss.stop({ graceful: false, wait: false }));
}

(process.argv[2] === 'seed' ? seed() : work()).catch((e) => { console.error(e); process.exit(1); });
