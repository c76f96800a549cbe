// Reference for bench-shim: the hello handler served the way the upstream node
// runtime serves it, minus Express (so an upper bound of it): one process, node's
// http server, JSON body parsed, the handler's {statusCode, headers, body} sent.
//   node node-http.js HANDLER PORT
'use strict';
const http = require('http');
const handler = require(require('path').resolve(process.argv[2]));
const port = Number(process.argv[3]);

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    try {
      const text = Buffer.concat(chunks).toString();
      const event = text ? JSON.parse(text) : null;
      const url = new URL(req.url, 'http://x');
      const context = {
        method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams),
        headers: req.headers, trigger: 'http', requestId: req.headers['x-request-id'] || '-',
      };
      const r = await handler(event, context);
      res.writeHead(r.statusCode || 200, { 'content-type': 'application/json', ...(r.headers || {}) });
      res.end(JSON.stringify(r.body));
    } catch (e) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: e.message }));
    }
  });
}).listen(port, '127.0.0.1');
