//! Held-out evaluation: the student's cross-entropy and perplexity on validation blocks
//! and, with a teacher, how often their top-1 tokens agree and KL(teacher‖student) at T=1.
//! No gradients; batched like training.

use crate::engine::data::Blocks;
use crate::engine::llama::Llama;
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

/// Evaluates `student` (and compares with `teacher`) on every block of `blocks`.
pub fn evaluate(student: &Llama, teacher: Option<&Llama>, blocks: &Blocks, batch: usize) -> Option<EvalResult> {
    if blocks.len() == 0 {
        return None;
    }
    let device = student.device();
    let (mut ce_sum, mut agree_sum, mut kl_sum, mut tokens) = (0.0, 0.0, 0.0, 0.0);
    tch::no_grad(|| {
        let all: Vec<usize> = (0..blocks.len()).collect();
        for chunk in all.chunks(batch.max(1)) {
            let (input, target, mask) = blocks.batch(chunk);
            let (input, target, mask) = (input.to_device(device), target.to_device(device), mask.to_device(device));
            let logits = student.forward(&input, None).to_kind(Kind::Float); // [B, T, V]
            let v = logits.size()[2];
            let ce = logits.view([-1, v]).cross_entropy_loss::<Tensor>(&target.view([-1]), None, Reduction::None, -100, 0.0);
            let m = mask.view([-1]);
            ce_sum += (&ce * &m).sum(Kind::Float).double_value(&[]);
            tokens += m.sum(Kind::Float).double_value(&[]);
            if let Some(t) = teacher {
                let tl = t.forward(&input, None).to_kind(Kind::Float).view([-1, v]);
                let sl = logits.view([-1, v]);
                let same = tl.argmax(-1, false).eq_tensor(&sl.argmax(-1, false)).to_kind(Kind::Float);
                agree_sum += (&same * &m).sum(Kind::Float).double_value(&[]);
                let (lt, ls) = (tl.log_softmax(-1, Kind::Float), sl.log_softmax(-1, Kind::Float));
                let kl = crate::engine::loss::kl_rows(&lt.exp(), &lt, &ls);
                kl_sum += (&kl * &m).sum(Kind::Float).double_value(&[]);
            }
        }
    });
    if tokens == 0.0 {
        return None;
    }
    let loss = ce_sum / tokens;
    Some(EvalResult {
        loss,
        ppl: loss.exp(),
        agreement: teacher.map(|_| agree_sum / tokens),
        kl: teacher.map(|_| kl_sum / tokens),
        tokens: tokens as u64,
    })
}
