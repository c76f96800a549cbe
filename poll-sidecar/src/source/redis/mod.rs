//! The Redis trigger (`KIPPER_TRIGGER=redis`): a reliable queue on the list `KIPPER_REDIS_LIST`.
//! Upstream `LPOP`ed an item before delivering it, so any failure lost it; here an item moves
//! atomically into a processing list owned by this consumer and leaves it only after a 2xx (or
//! into the dead-letter list after the last attempt). See [`queue`] for the keys.

pub mod item;
pub mod queue;
mod scripts;
