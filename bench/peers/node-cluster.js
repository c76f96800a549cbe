// Clustered node:http for bench-shim: the reference server of bench/reference/node-http.js
// (node's http module, the hello handler) in WORKERS processes behind node's cluster module,
// which is how a Node user spreads one server over the CPUs.
//   node node-cluster.js HANDLER PORT WORKERS
'use strict';
const cluster = require('cluster');

if (cluster.isPrimary) {
  for (let i = 0; i < Number(process.argv[4] || 1); i++) cluster.fork();
  process.on('SIGTERM', () => { for (const w of Object.values(cluster.workers)) w.kill(); process.exit(0); });
} else {
  // The worker sees the primary's argv: HANDLER and PORT are where node-http.js reads them.
  require('../reference/node-http.js');
}
