//! The offline teacher cache (`train(teacher_cache=topk(64))` or `sample(50)`): the frozen teacher's
//! next-token distributions stored once per (teacher, data, seq) and read back by every
//! later run instead of running the teacher. `sparse` is the in-memory form the losses
//! read (kept ids, their log-probabilities, the exact tail and the target's
//! log-probability); `sample` draws the ids a `sample(n)` cache keeps; `store` is the on-disk form, checksummed shards keyed by content.
//! The sparse form is always what the losses see when a cache is on, filled or not, so a
//! run's numbers do not depend on which of its batches were already stored.

pub mod sample;
pub mod sparse;
pub mod store;

pub use sparse::{BlockEntry, Payload, SparseTeacher};
pub use store::{cache_key, CacheMode, TeacherCache};
