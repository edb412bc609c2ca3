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

use crate::engine::data::Blocks;
use crate::engine::llama::Llama;
use std::cell::RefCell;

/// The teacher of blocks `blocks` as its cache keeps it: read when stored, else computed
/// from `input` (the blocks' ids) and stored.
pub fn read_or_fill(cache: &RefCell<TeacherCache>, teacher: &Llama, blocks: &[u32], input: &tch::Tensor, target: &tch::Tensor) -> Result<SparseTeacher, String> {
    let device = input.device();
    if let Some(s) = cache.borrow().get(blocks) {
        return Ok(s.to_device(device));
    }
    let logits = tch::no_grad(|| teacher.forward(input, None));
    let mode = cache.borrow().mode;
    let fresh = match mode {
        CacheMode::TopK(k) => SparseTeacher::from_logits(&logits, target, k).to_device(tch::Device::Cpu).entries(),
        CacheMode::Sample(n) => sample::sampled_entries(&logits, target, n, blocks),
    };
    Ok(cache.borrow_mut().put(blocks, fresh)?.to_device(device))
}

/// `precompute`: fills the cache with every block of `sets` (numbered one after the other,
/// as a training run numbers its training then validation blocks) that it does not hold,
/// `batch` blocks per teacher forward; `progress(done, total)` after each batch. Returns
/// how many blocks the teacher computed.
pub fn fill(cache: &RefCell<TeacherCache>, teacher: &Llama, sets: &[&Blocks], batch: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<usize, String> {
    let total: usize = sets.iter().map(|s| s.len()).sum();
    let (mut done, mut computed, mut first) = (0, 0, 0);
    for set in sets {
        let all: Vec<usize> = (0..set.len()).collect();
        for chunk in all.chunks(batch.max(1)) {
            let ids: Vec<u32> = chunk.iter().map(|&i| (first + i) as u32).collect();
            let missing = ids.iter().filter(|&&b| !cache.borrow().has_all(&[b])).count();
            if missing > 0 {
                let (input, target, _) = set.batch(chunk);
                let device = teacher.device();
                read_or_fill(cache, teacher, &ids, &input.to_device(device), &target.to_device(device))?;
                computed += missing;
            }
            done += chunk.len();
            progress(done, total);
        }
        first += set.len();
    }
    cache.borrow_mut().flush()?;
    Ok(computed)
}
