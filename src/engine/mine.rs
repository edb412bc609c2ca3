//! Hard-set mining: a difficulty per training block — any weighted sum of per-example
//! losses, e.g. `ce(student) - ce(teacher)` (where the student trails the teacher most) or
//! `kl(T=2)` — computed batched and without gradients, then a keep rule picks the
//! hardest blocks. Each block's value is its loss plan evaluated on that block alone (mean
//! over its valid tokens), so a difficulty means what the same expression means as a
//! training loss. With a teacher cache the teacher's side is read from it (`ce(teacher)`
//! from the stored target log-probabilities, KL-family terms from the kept ids), and the
//! blocks it lacks are computed and stored for the training run that follows.

use super::cache::{SparseTeacher, TeacherCache};
use super::data::Blocks;
use super::llama::Llama;
use super::loss::{LossInputs, LossPlan};
use crate::spec::replay::Threshold;
use crate::spec::{KeepRule, LossExpr, Of};
use std::cell::RefCell;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Which model's logits a term group reads.
fn split_by_model(expr: &LossExpr) -> (Option<LossExpr>, Option<LossExpr>) {
    let (mut student, mut teacher) = (Vec::new(), Vec::new());
    for (w, t) in &expr.terms {
        let mut unbound = t.clone();
        unbound.of = None;
        match t.of {
            Some(Of::Teacher) => teacher.push((w.clone(), unbound)),
            _ => student.push((w.clone(), unbound)),
        }
    }
    let some = |terms: Vec<_>| (!terms.is_empty()).then_some(LossExpr { terms, on_policy: None });
    (some(student), some(teacher))
}

/// One difficulty per block of `blocks` (block i is block i of `cache`, when there is
/// one); `progress(done, total)` after each batch.
pub fn score(
    student: &Llama,
    teacher: Option<&Llama>,
    cache: Option<&RefCell<TeacherCache>>,
    blocks: &Blocks,
    difficulty: &LossExpr,
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>, String> {
    for (w, t) in &difficulty.terms {
        if w.as_const().is_none() {
            return Err(format!("the difficulty's weights must be numbers; {} changes over training", w.describe()));
        }
        if t.layers.is_some() || matches!(t.kind, crate::spec::TermKind::Mse | crate::spec::TermKind::Cosine) {
            return Err(format!("{} compares hidden states through projections that only training learns; mine with logit terms (ce, kl, ...)", t.describe()));
        }
    }
    let (on_student, on_teacher) = split_by_model(difficulty);
    let needs_teacher = difficulty.needs_teacher();
    let teacher = match (needs_teacher, teacher) {
        (true, None) => return Err(format!("the difficulty {} reads the teacher, but there is none", difficulty.describe())),
        (_, t) => t,
    };
    let aux = VarStore::new(student.device());
    let plan = |e: &LossExpr, scored: &Llama| LossPlan::new(e, &scored.spec, teacher.map(|t| &t.spec), &aux.root());
    let student_plan = on_student.as_ref().map(|e| plan(e, student)).transpose()?;
    let teacher_plan = match (&on_teacher, teacher) {
        (Some(e), Some(t)) if cache.is_none() => Some(plan(e, t)?),
        _ => None,
    };
    // From a cache the teacher's own terms are its cross-entropy: Σ weight · (−mean log p).
    let teacher_ce_weight = match (&on_teacher, cache) {
        (Some(e), Some(_)) => {
            if let Some((_, t)) = e.terms.iter().find(|(_, t)| t.kind != crate::spec::TermKind::Ce) {
                return Err(format!("{}(teacher) reads the teacher's logits, which its cache does not keep; only ce(teacher) is stored", t.kind.name()));
            }
            e.terms.iter().filter_map(|(w, _)| w.as_const()).sum::<f64>()
        }
        _ => 0.0,
    };
    let device = student.device();
    let mut scores = Vec::with_capacity(blocks.len());
    let all: Vec<usize> = (0..blocks.len()).collect();
    tch::no_grad(|| -> Result<(), String> {
        for chunk in all.chunks(batch.max(1)) {
            let (input, target, mask) = blocks.batch(chunk);
            let (input, target, mask) = (input.to_device(device), target.to_device(device), mask.to_device(device));
            let s_logits = student.forward(&input, None);
            let (t_logits, sparse) = match (teacher.filter(|_| needs_teacher), cache) {
                (Some(t), Some(c)) => {
                    let ids: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
                    (None, Some(super::cache::read_or_fill(c, t, &ids, &input.to_device(t.device()), &target.to_device(t.device()))?.to_device(device)))
                }
                (t, _) => (t.map(|t| t.forward(&input, None)), None),
            };
            for row in 0..chunk.len() as i64 {
                let one = |x: &Tensor| x.narrow(0, row, 1);
                let (target, mask) = (one(&target), one(&mask));
                let tokens = mask.sum(Kind::Float).double_value(&[]);
                if tokens == 0.0 {
                    scores.push(f64::NAN);
                    continue;
                }
                let t_row = t_logits.as_ref().map(|t| one(t));
                let sparse_row = sparse.as_ref().map(|s| SparseTeacher { ids: one(&s.ids), log_probs: one(&s.log_probs), tail: one(&s.tail), target: one(&s.target) });
                let value = |p: &LossPlan, scored: &Tensor| {
                    p.compute(
                        &LossInputs {
                            student_logits: scored,
                            teacher_logits: t_row.as_ref(),
                            teacher_sparse: sparse_row.as_ref(),
                            student_states: None,
                            teacher_states: None,
                            targets: &target,
                            mask: &mask,
                            denominator: tokens,
                        },
                        0,
                        1,
                    )
                    .total
                    .double_value(&[])
                };
                let mut d = 0.0;
                if let Some(p) = &student_plan {
                    d += value(p, &one(&s_logits));
                }
                if let (Some(p), Some(t)) = (&teacher_plan, &t_row) {
                    d += value(p, t);
                }
                if let Some(s) = &sparse_row {
                    d -= teacher_ce_weight * (&s.target * &mask).sum(Kind::Float).double_value(&[]) / tokens;
                }
                scores.push(d);
            }
            progress(scores.len(), blocks.len());
        }
        Ok(())
    })?;
    Ok(scores)
}

/// The q-quantile of the finite `scores` (linear interpolation, as numpy's default).
pub fn quantile(scores: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = scores.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// The blocks a rule keeps (ascending indices) and the threshold it drew: `top` keeps
/// exactly round(p·n) of the hardest (ties broken by position); `above` keeps every block
/// strictly above the threshold.
pub fn select(scores: &[f64], rule: &KeepRule) -> Result<(Vec<usize>, f64), String> {
    let finite: Vec<usize> = (0..scores.len()).filter(|&i| scores[i].is_finite()).collect();
    let (mut kept, threshold) = match rule {
        KeepRule::Top(p) => {
            if !(*p > 0.0 && *p <= 1.0) {
                return Err(format!("top() keeps a fraction in (0, 100%], got {}", crate::spec::fmt_num(*p)));
            }
            let n = ((p * finite.len() as f64).round() as usize).clamp(1, finite.len().max(1));
            let mut order = finite.clone();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            order.truncate(n);
            let threshold = order.last().map(|&i| scores[i]).unwrap_or(f64::NAN);
            (order, threshold)
        }
        KeepRule::Above(t) => {
            let threshold = match t {
                Threshold::Value(x) => *x,
                Threshold::Quantile(q) => quantile(scores, *q),
            };
            (finite.into_iter().filter(|&i| scores[i] > threshold).collect(), threshold)
        }
        KeepRule::Quantile(_) => return Err(format!("{} is a threshold: keep blocks above it with keep=above({})", rule.describe(), rule.describe())),
    };
    kept.sort();
    Ok((kept, threshold))
}

/// A terminal histogram of the difficulties: one row per bin, the kept side marked.
pub fn histogram(scores: &[f64], threshold: f64, bins: usize, width: usize) -> String {
    let v: Vec<f64> = scores.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return String::new();
    }
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let step = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let mut counts = vec![0usize; bins];
    for x in &v {
        counts[(((x - lo) / step) as usize).min(bins - 1)] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut out = String::new();
    for (i, c) in counts.iter().enumerate() {
        let from = lo + step * i as f64;
        let bar = "█".repeat((c * width).div_ceil(most).min(width));
        let mark = if from >= threshold {
            " ◀ kept"
        } else if from + step > threshold {
            " ◀ partly kept"
        } else {
            ""
        };
        out.push_str(&format!("  {:>9.4} … {:>9.4} │{bar:<width$}│ {c}{mark}\n", from, from + step));
    }
    out.trim_end().to_string()
}
