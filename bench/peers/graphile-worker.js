// graphile-worker adapter for bench-poll (PostgreSQL; claims with SKIP LOCKED).
//   node graphile-worker.js seed   PEER_URL PEER_NAME (schema) PEER_ROWS: migrate, add the jobs
//   node graphile-worker.js work   PEER_URL PEER_NAME PEER_TARGET PEER_CONCURRENCY PEER_BATCH
// Worker settings are the ones its performance guide gives for many small jobs: a local queue
// (jobs fetched and locked in batches) and batched completions.
'use strict';
const { run, makeWorkerUtils, Logger } = require('graphile-worker');
const { post, ready, payload, env, concurrency } = require('./deliver');

const connectionString = env('PEER_URL');
const schema = env('PEER_NAME');
// Warnings and errors only: its default logger prints a line per completed job.
const logger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning') console.error(message);
});

async function seed() {
  const utils = await makeWorkerUtils({ connectionString, schema, logger });
  await utils.migrate();
  const rows = Number(env('PEER_ROWS'));
  for (let start = 1; start <= rows; start += 5000) {
    const specs = [];
    for (let i = start; i < Math.min(start + 5000, rows + 1); i++) {
      specs.push({ identifier: 'deliver', payload: payload(i) });
    }
    await utils.addJobs(specs);
  }
  await utils.release();
}

async function work() {
  const runner = await run({
    preset: {
      worker: {
        connectionString, schema, concurrentJobs: concurrency, pollInterval: 1000,
        localQueue: { size: Number(process.env.PEER_BATCH || 500) },
        completeJobBatchDelay: 0, failJobBatchDelay: 0,
      },
    },
    logger, noHandleSignals: true,
    taskList: { deliver: async (job) => post(job) },
  });
  ready(() => runner.stop());
}

(process.argv[2] === 'seed' ? seed() : work()).catch((e) => { console.error(e); process.exit(1); });
