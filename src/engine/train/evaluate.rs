//! Held-out evaluation: the student's cross-entropy and perplexity on validation blocks
//! and, with a teacher, how often their top-1 tokens agree and KL(teacher‖student) at T=1.
//! With a teacher cache the teacher's side is read from it (its top-1 is the first kept
//! id, the KL is over the kept ids and the tail, its own loss is the stored target
//! log-probability), so a run reading the cache never runs the teacher. No gradients.

use crate::engine::cache::TeacherCache;
use crate::engine::data::Blocks;
use crate::engine::llama::Llama;
use std::cell::RefCell;
use tch::{Kind, Reduction, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalResult {
    /// Cross-entropy per valid target token (nats).
    pub loss: f64,
    pub ppl: f64,
    /// Fraction of valid positions where teacher and student pick the same top token.
    pub agreement: Option<f64>,
    /// KL(teacher‖student) at T=1 per valid token.
    pub kl: Option<f64>,
    pub tokens: u64,
}

/// The teacher an evaluation compares with.
pub enum Reference<'a> {
    Live(&'a Llama),
    /// Read from (and filling) the cache; `blocks` of the evaluation are numbered from
    /// `first_block` in it.
    Cached { teacher: &'a Llama, cache: &'a RefCell<TeacherCache>, first_block: usize },
}

impl Reference<'_> {
    /// The teacher's own loss and perplexity on `blocks`.
    pub fn own_eval(&self, blocks: &Blocks, batch: usize) -> Result<Option<EvalResult>, String> {
        match self {
            Reference::Live(t) => evaluate(t, None, blocks, batch),
            Reference::Cached { teacher, cache, first_block } => {
                let (mut nll, mut tokens) = (0.0, 0.0);
                let all: Vec<usize> = (0..blocks.len()).collect();
                for chunk in all.chunks(batch.max(1)) {
                    let (input, target, mask) = blocks.batch(chunk);
                    let device = teacher.device();
                    let ids: Vec<u32> = chunk.iter().map(|&i| (first_block + i) as u32).collect();
                    let sparse = crate::engine::cache::read_or_fill(cache, teacher, &ids, &input.to_device(device), &target.to_device(device))?;
                    let m = mask.to_device(sparse.target.device());
                    nll -= (&sparse.target * &m).sum(Kind::Float).double_value(&[]);
                    tokens += m.sum(Kind::Float).double_value(&[]);
                }
                Ok((tokens > 0.0).then(|| EvalResult { loss: nll / tokens, ppl: (nll / tokens).exp(), agreement: None, kl: None, tokens: tokens as u64 }))
            }
        }
    }
}

/// Evaluates `student` (and compares with `teacher`) on every block of `blocks`.
pub fn evaluate(student: &Llama, teacher: Option<&Reference>, blocks: &Blocks, batch: usize) -> Result<Option<EvalResult>, String> {
    if blocks.len() == 0 {
        return Ok(None);
    }
    let device = student.device();
    let (mut ce_sum, mut agree_sum, mut kl_sum, mut tokens) = (0.0, 0.0, 0.0, 0.0);
    let all: Vec<usize> = (0..blocks.len()).collect();
    for chunk in all.chunks(batch.max(1)) {
        let (input, target, mask) = blocks.batch(chunk);
        let (input, target, mask) = (input.to_device(device), target.to_device(device), mask.to_device(device));
        let logits = tch::no_grad(|| student.forward(&input, None).to_kind(Kind::Float)); // [B, T, V]
        let v = logits.size()[2];
        let ce = logits.view([-1, v]).cross_entropy_loss::<Tensor>(&target.view([-1]), None, Reduction::None, -100, 0.0);
        let m = mask.view([-1]);
        ce_sum += (&ce * &m).sum(Kind::Float).double_value(&[]);
        tokens += m.sum(Kind::Float).double_value(&[]);
        let sl = logits.view([-1, v]);
        let (same, kl) = match teacher {
            None => continue,
            Some(Reference::Live(t)) => tch::no_grad(|| {
                let tl = t.forward(&input, None).to_kind(Kind::Float).view([-1, v]);
                let same = tl.argmax(-1, false).eq_tensor(&sl.argmax(-1, false)).to_kind(Kind::Float);
                let (lt, ls) = (tl.log_softmax(-1, Kind::Float), sl.log_softmax(-1, Kind::Float));
                (same, crate::engine::loss::kl_rows(&lt.exp(), &lt, &ls))
            }),
            Some(Reference::Cached { teacher, cache, first_block }) => {
                let ids: Vec<u32> = chunk.iter().map(|&i| (first_block + i) as u32).collect();
                let sparse = crate::engine::cache::read_or_fill(cache, teacher, &ids, &input, &target)?;
                let k = sparse.k() as i64;
                tch::no_grad(|| {
                    let (kept, lp, tail) = (sparse.ids.view([-1, k]), sparse.log_probs.view([-1, k]), sparse.tail.view([-1]));
                    // The teacher's most likely id: the first kept (top-k) or the most drawn (sampled).
                    let top = kept.gather(1, &lp.argmax(1, true), false).squeeze_dim(1);
                    let same = top.eq_tensor(&sl.argmax(-1, false)).to_kind(Kind::Float);
                    (same, crate::engine::loss::sparse_kl_rows(&sl, &kept, &lp, &tail))
                })
            }
        };
        agree_sum += (&same * &m).sum(Kind::Float).double_value(&[]);
        kl_sum += (&kl * &m).sum(Kind::Float).double_value(&[]);
    }
    if tokens == 0.0 {
        return Ok(None);
    }
    let loss = ce_sum / tokens;
    Ok(Some(EvalResult {
        loss,
        ppl: loss.exp(),
        agreement: teacher.map(|_| agree_sum / tokens),
        kl: teacher.map(|_| kl_sum / tokens),
        tokens: tokens as u64,
    }))
}
