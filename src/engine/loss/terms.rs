//! Logit terms (`ce` and the KL family) as per-position values over the valid rows. Each
//! reads the log-softmaxes that `Tempered` holds for one temperature, so terms at the same
//! temperature share them; `mod.rs` decides which parts each temperature needs.

use crate::spec::TermKind;
use tch::{Kind, Tensor};

/// What a term needs at its temperature, beyond the student's log-probabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Needs {
    pub student_probs: bool,
    pub teacher_log_probs: bool,
    pub teacher_probs: bool,
}

impl Needs {
    pub fn of(kind: TermKind) -> Needs {
        use TermKind::*;
        Needs {
            student_probs: matches!(kind, Rkl | Js | Tvd | Skl | Srkl),
            teacher_log_probs: matches!(kind, Kl | Rkl | Js | Skl | Srkl),
            teacher_probs: matches!(kind, Kl | Js | Tvd | Skl),
        }
    }

    pub fn union(self, other: Needs) -> Needs {
        Needs {
            student_probs: self.student_probs || other.student_probs,
            teacher_log_probs: self.teacher_log_probs || other.teacher_log_probs,
            teacher_probs: self.teacher_probs || other.teacher_probs,
        }
    }
}

/// Student and teacher distributions at one temperature, over the valid rows `[N, V]`, f32.
pub(super) struct Tempered {
    /// The plan's temperature slot these distributions are at.
    pub t: usize,
    /// log q over the vocabulary `[N, V]`, for `ce`.
    pub student_vocab_log_probs: Tensor,
    /// log q over the classes the divergences compare: the vocabulary, or with a cached
    /// teacher its k kept ids and one tail class `[N, k + 1]`. Carries the gradient.
    pub student_log_probs: Tensor,
    pub student_probs: Option<Tensor>,
    /// log p and p: computed without a graph.
    pub teacher_log_probs: Option<Tensor>,
    pub teacher_probs: Option<Tensor>,
}

impl Tempered {
    /// `student`, `teacher`: the valid rows' logits `[N, V]`, already f32. `divisor`: the
    /// temperature as a 0-dim tensor on the device, `None` for a constant 1.
    pub fn new(t: usize, divisor: Option<&Tensor>, needs: Needs, student: &Tensor, teacher: Option<&Tensor>) -> Tempered {
        let student_log_probs = soften(student, divisor);
        let student_probs = needs.student_probs.then(|| student_log_probs.exp());
        let (teacher_log_probs, teacher_probs) = if needs.teacher_log_probs || needs.teacher_probs {
            let teacher = teacher.expect("the plan checked that KL-family terms get teacher logits");
            tch::no_grad(|| {
                let log_p = soften(teacher, divisor);
                let p = needs.teacher_probs.then(|| log_p.exp());
                (Some(log_p), p)
            })
        } else {
            (None, None)
        };
        Tempered { t, student_vocab_log_probs: student_log_probs.shallow_clone(), student_log_probs, student_probs, teacher_log_probs, teacher_probs }
    }

    /// Against a cached teacher: both distributions over its k kept ids plus one class for
    /// the rest. A sampled cache's kept ids are its draws with log(count / n) and no tail,
    /// so `kl` at T = 1 is the student's cross-entropy on the draws less their entropy. `kept`: ids `[N, k]`, their log-probabilities at T = 1 `[N, k]` and the
    /// tail's `[N]`. Re-tempering divides the stored log-probabilities by T and
    /// renormalises: exact for the kept ids' relative odds at every T; the tail class is
    /// tempered as if it were one token, exact at T = 1 (lang/losses.md#teacher-cache).
    pub fn sparse(t: usize, divisor: Option<&Tensor>, needs: Needs, student: &Tensor, kept: &(Tensor, Tensor, Tensor)) -> Tempered {
        let (ids, log_p, tail) = kept;
        let vocab_log_q = soften(student, divisor);
        let kept_q = vocab_log_q.gather(1, ids, false);
        // The student's mass outside the kept ids, log(1 − Σ kept q) = log(−expm1(lse)):
        // k-wide, where summing the rest of the vocabulary would cost another [N, V] pass.
        // The student is far from putting all its mass on k ids, so this does not cancel.
        let rest_q = (-kept_q.logsumexp([-1], false).clamp_max(0.0).expm1()).clamp_min(STUDENT_TAIL_MIN).log();
        let student_log_probs = Tensor::cat(&[kept_q, rest_q.unsqueeze(1)], 1);
        let student_probs = needs.student_probs.then(|| student_log_probs.exp());
        let (teacher_log_probs, teacher_probs) = tch::no_grad(|| {
            // A sampled cache's padding slots and empty tail are −inf: floored, they stay 0.
            let classes = Tensor::cat(&[log_p.clamp_min(TAIL_FLOOR), tail.clamp_min(TAIL_FLOOR).unsqueeze(1)], 1);
            let log_p = soften(&classes, divisor);
            let p = needs.teacher_probs.then(|| log_p.exp());
            (Some(log_p), p)
        });
        Tempered { t, student_vocab_log_probs: vocab_log_q, student_log_probs, student_probs, teacher_log_probs, teacher_probs }
    }

    fn q(&self) -> &Tensor {
        self.student_probs.as_ref().expect("student probabilities were planned for this term")
    }

    fn log_p(&self) -> &Tensor {
        self.teacher_log_probs.as_ref().expect("teacher log-probabilities were planned for this term")
    }

    fn p(&self) -> &Tensor {
        self.teacher_probs.as_ref().expect("teacher probabilities were planned for this term")
    }
}

/// The log-probability a tail class never goes below: an empty tail (k = vocabulary) is
/// exp(−1e4) = 0 in f32, where −inf would turn 0·log 0 into NaN.
const TAIL_FLOOR: f64 = -1e4;

/// The smallest student tail mass: 1 − Σ kept q rounds to 0 when the kept ids are (nearly)
/// the whole vocabulary, and log 0 has no gradient to give.
const STUDENT_TAIL_MIN: f64 = 1e-30;

/// log_softmax(logits / T), dividing only when there is a T (`None`: a constant 1).
fn soften(logits: &Tensor, t: Option<&Tensor>) -> Tensor {
    match t {
        None => logits.log_softmax(-1, Kind::Float),
        Some(t) => (logits / t).log_softmax(-1, Kind::Float),
    }
}

fn row_sum(x: &Tensor) -> Tensor {
    x.sum_dim_intlist(-1, false, Kind::Float)
}

/// Σ_v a·(log a − log b) per row: KL(a ‖ b) written out so that only `a`, which the
/// caller already holds, is saved for the backward pass of the product.
pub fn kl_rows(a: &Tensor, log_a: &Tensor, log_b: &Tensor) -> Tensor {
    row_sum(&(a * (log_a - log_b)))
}

/// log(w·p + (1−w)·q), in log space so tiny probabilities do not underflow to log 0.
fn log_mixture(x: &Tempered, w: f64) -> Tensor {
    (x.log_p() + w.ln()).logaddexp(&(&x.student_log_probs + (1.0 - w).ln()))
}

/// Cross-entropy on the data's next tokens: −log q(target) at T = 1. `targets: [N]`.
pub(super) fn cross_entropy(at_one: &Tempered, targets: &Tensor) -> Tensor {
    -at_one.student_vocab_log_probs.gather(1, &targets.unsqueeze(1), false).squeeze_dim(1)
}

/// Per-row value `[N]` of a KL-family term; `mix` is js's β or skl's and srkl's a.
pub(super) fn divergence(kind: TermKind, x: &Tempered, mix: f64) -> Tensor {
    match kind {
        // KL(p ‖ q)
        TermKind::Kl => kl_rows(x.p(), x.log_p(), &x.student_log_probs),
        // KL(q ‖ p)
        TermKind::Rkl => kl_rows(x.q(), &x.student_log_probs, x.log_p()),
        // β·KL(p ‖ m) + (1−β)·KL(q ‖ m), m = β·p + (1−β)·q
        TermKind::Js => {
            let log_m = log_mixture(x, mix);
            kl_rows(x.p(), x.log_p(), &log_m) * mix + kl_rows(x.q(), &x.student_log_probs, &log_m) * (1.0 - mix)
        }
        // ½·Σ|p − q|
        TermKind::Tvd => row_sum(&(x.p() - x.q()).abs()) * 0.5,
        // KL(p ‖ a·p + (1−a)·q)
        TermKind::Skl => kl_rows(x.p(), x.log_p(), &log_mixture(x, mix)),
        // KL(q ‖ (1−a)·p + a·q)
        TermKind::Srkl => kl_rows(x.q(), &x.student_log_probs, &log_mixture(x, 1.0 - mix)),
        TermKind::Ce | TermKind::Mse | TermKind::Cosine => unreachable!("{} is not a divergence of distributions", kind.name()),
    }
}
