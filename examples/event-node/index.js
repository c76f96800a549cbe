// An event-triggered function: kipper-poll POSTs each row / list item / S3 record
// to /event. A 2xx marks the event done; anything else makes kipper-poll retry it.
//   KIPPER_TRIGGER=postgres cargo run --release -p kipper-shim -- examples/event-node/index.js
//   curl -s localhost:8080/event -d '{"id":42,"customer":"acme","amount":99.99}'
module.exports = async (event, context) => {
  if (!event || event.id === undefined) {
    // Not retried forever: kipper-poll dead-letters after its maximum attempts.
    return { statusCode: 422, body: { error: 'event has no id' } };
  }
  console.log('processing', context.trigger, 'event', event.id);
  return { statusCode: 200, body: { processed: event.id } };
};
