// The smallest Kipper HTTP function: answers every request with a greeting.
//   cargo run --release -p kipper-shim -- examples/hello-node/index.js
//   curl -s localhost:8080/ -d '{"name":"Ada"}' -H 'content-type: application/json'
module.exports = async (event, context) => {
  const name = (event && event.name) || context.query.name || 'world';
  return {
    statusCode: 200,
    headers: { 'Content-Type': 'application/json' },
    body: { hello: name, method: context.method, path: context.path, requestId: context.requestId },
  };
};
