// fastify for bench-shim: the hello handler as a fastify route (JSON body parsed by fastify),
// in WORKERS processes behind node's cluster module.
//   NODE_PATH=<peer cache>/node_modules node fastify.js HANDLER PORT WORKERS
'use strict';
const cluster = require('cluster');

if (cluster.isPrimary) {
  for (let i = 0; i < Number(process.argv[4] || 1); i++) cluster.fork();
  process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers)) w.kill(); process.exit(0); });
} else {
  const handler = require(require('path').resolve(process.argv[2]));
  const app = require('fastify')({ logger: false });
  app.all('/*', async (req, reply) => {
    const context = {
      method: req.method, path: req.url.split('?')[0], query: req.query, headers: req.headers,
      trigger: 'http', requestId: req.headers['x-request-id'] || '-',
    };
    const r = await handler(req.body ?? null, context);
    reply.code(r.statusCode || 200).headers({ 'content-type': 'application/json', ...(r.headers || {}) });
    return JSON.stringify(r.body);
  });
  app.listen({ port: Number(process.argv[3]), host: '127.0.0.1' });
}
