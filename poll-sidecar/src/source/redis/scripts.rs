//! The Lua scripts of the reliable queue. Each runs atomically inside Redis, so an item is always
//! in exactly one of: the list, one consumer's processing list, the dead-letter list.
//!
//! The scripts name the keys of other consumers (processing lists, heartbeats) that they find in
//! the registry set, which a standalone Redis allows and Redis Cluster would not: the trigger
//! targets one Redis server, as upstream did.

use redis::Script;

/// Claim up to `ARGV[1]` items: pop them from the head of the list and append them, in order, to
/// this consumer's processing list, in one atomic step. It also renews this consumer's heartbeat
/// and registers it, so that an item is never held by a consumer nobody can see.
///
/// KEYS: list, processing list, heartbeat key, registry set.
/// ARGV: max items, consumer id, lease in milliseconds.
pub(super) fn claim() -> Script {
    Script::new(
        r"
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
redis.call('SADD', KEYS[4], ARGV[2])
local items = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not items then return {} end
-- RPUSH in chunks: unpack() of a very long table overflows Lua's C stack.
for i = 1, #items, 512 do
  redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 511, #items)))
end
return items
",
    )
}

/// Move one item from this consumer's processing list to the dead-letter list, as the envelope
/// `ARGV[2]` that records the error and the attempts. Nothing is pushed when the item is no
/// longer held (its lease expired and another consumer took it back): that one delivers it.
///
/// KEYS: processing list, dead-letter list. ARGV: item, envelope. Returns 1 when moved.
pub(super) fn dead_letter() -> Script {
    Script::new(
        r"
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
if removed == 1 then redis.call('RPUSH', KEYS[2], ARGV[2]) end
return removed
",
    )
}

/// Give one held item back to the head of the list (it was claimed but not delivered, e.g. the
/// target was not ready or the sidecar is shutting down).
///
/// KEYS: processing list, list. ARGV: item. Returns 1 when given back.
pub(super) fn release() -> Script {
    Script::new(
        r"
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
if removed == 1 then redis.call('LPUSH', KEYS[2], ARGV[1]) end
return removed
",
    )
}

/// Return the processing lists of every registered consumer whose heartbeat expired to the head
/// of the list, in their original order, and unregister those consumers. `ARGV[2]` names a
/// consumer to return unconditionally (this one, leaving), or is empty.
///
/// KEYS: registry set, list. ARGV: key prefix (`<list>`), consumer id or ''.
/// Returns the number of items returned.
pub(super) fn recover() -> Script {
    Script::new(
        r"
local moved = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local heartbeat = ARGV[1] .. ':consumer:' .. id
  if id == ARGV[2] or redis.call('EXISTS', heartbeat) == 0 then
    local processing = ARGV[1] .. ':processing:' .. id
    -- RIGHT -> LEFT moves the newest first, so the list's head ends up in the original order.
    while redis.call('LMOVE', processing, KEYS[2], 'RIGHT', 'LEFT') do moved = moved + 1 end
    redis.call('SREM', KEYS[1], id)
    if id == ARGV[2] then redis.call('DEL', heartbeat) end
  end
end
return moved
",
    )
}

/// The backlog KEDA should scale on: items in the list plus items held by any consumer.
///
/// KEYS: list, registry set. ARGV: key prefix (`<list>`).
pub(super) fn backlog() -> Script {
    Script::new(
        r"
local total = redis.call('LLEN', KEYS[1])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  total = total + redis.call('LLEN', ARGV[1] .. ':processing:' .. id)
end
return total
",
    )
}
