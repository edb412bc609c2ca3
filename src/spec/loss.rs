//! Loss expressions: a weighted sum of terms, kept symbolic until the engine compiles it
//! into a plan (one log-softmax per temperature, shared across terms).

use super::{fmt_num, Schedule};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermKind {
    Ce,
    Kl,
    Rkl,
    Js,
    Tvd,
    Skl,
    Srkl,
    Mse,
    Cosine,
}

impl TermKind {
    pub fn name(self) -> &'static str {
        match self {
            TermKind::Ce => "ce",
            TermKind::Kl => "kl",
            TermKind::Rkl => "rkl",
            TermKind::Js => "js",
            TermKind::Tvd => "tvd",
            TermKind::Skl => "skl",
            TermKind::Srkl => "srkl",
            TermKind::Mse => "mse",
            TermKind::Cosine => "cosine",
        }
    }

    /// Terms that compare the student with the teacher need a teacher to run.
    pub fn needs_teacher(self) -> bool {
        self != TermKind::Ce
    }

    /// Divergences between tempered distributions: their gradients shrink by 1/T².
    pub fn is_kl_family(self) -> bool {
        matches!(self, TermKind::Kl | TermKind::Rkl | TermKind::Js | TermKind::Tvd | TermKind::Skl | TermKind::Srkl)
    }
}

/// Which student layer is matched to which teacher layer for hidden-state terms.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerMap {
    Pairs(Vec<(usize, usize)>),
    /// Student layer i matches teacher layer (i+1)·n − 1.
    Every(usize),
}

impl LayerMap {
    pub fn describe(&self) -> String {
        match self {
            LayerMap::Every(n) => format!("every({n})"),
            LayerMap::Pairs(p) => {
                let items: Vec<String> = p.iter().map(|(s, t)| format!("[{s}, {t}]")).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}

/// Whose predictions a `ce` term scores: `ce(teacher)` in a mining difficulty. Unbound
/// terms score the student.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    Student,
    Teacher,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub kind: TermKind,
    pub of: Option<Of>,
    /// Temperature (KL family); 1 elsewhere.
    pub t: Schedule,
    /// `js` mixing weight β or `skl` skew α.
    pub mix: Option<f64>,
    pub layers: Option<LayerMap>,
}

impl Term {
    pub fn describe(&self) -> String {
        let mut args = Vec::new();
        if self.kind.is_kl_family() && self.t != Schedule::Const(1.0) {
            args.push(format!("T={}", self.t.describe()));
        }
        if let Some(m) = self.mix {
            args.push(format!("{}={}", if self.kind == TermKind::Js { "beta" } else { "a" }, fmt_num(m)));
        }
        if let Some(l) = &self.layers {
            args.push(format!("layers={}", l.describe()));
        }
        match self.of {
            Some(Of::Student) => args.insert(0, "student".into()),
            Some(Of::Teacher) => args.insert(0, "teacher".into()),
            None => {}
        }
        if args.is_empty() {
            self.kind.name().to_string()
        } else {
            format!("{}({})", self.kind.name(), args.join(", "))
        }
    }
}

/// On-policy distillation (`gkd`): with probability `lambda` a step trains on the
/// student's own continuations of the data's prompts, sampled at `temperature`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OnPolicy {
    pub lambda: f64,
    pub temperature: f64,
    pub max_new: usize,
    /// Sampled rows kept for reuse (0: none).
    pub replay: usize,
}

impl OnPolicy {
    pub fn describe(&self) -> String {
        let mut s = format!("on-policy(lambda={}, T={}, max_new={}", fmt_num(self.lambda), fmt_num(self.temperature), self.max_new);
        if self.replay > 0 {
            s.push_str(&format!(", replay={}", self.replay));
        }
        s.push(')');
        s
    }
}

/// Σ weightᵢ · termᵢ, optionally on the student's own samples.
#[derive(Debug, Clone, PartialEq)]
pub struct LossExpr {
    pub terms: Vec<(Schedule, Term)>,
    pub on_policy: Option<OnPolicy>,
}

impl LossExpr {
    pub fn single(term: Term) -> Self {
        LossExpr { terms: vec![(Schedule::Const(1.0), term)], on_policy: None }
    }

    pub fn needs_teacher(&self) -> bool {
        self.terms.iter().any(|(_, t)| t.kind.needs_teacher() || t.of == Some(Of::Teacher))
    }

    pub fn scaled(&self, w: &Schedule) -> LossExpr {
        LossExpr { terms: self.terms.iter().map(|(x, t)| (mul_weights(x, w), t.clone())).collect(), on_policy: self.on_policy }
    }

    pub fn plus(&self, other: &LossExpr) -> LossExpr {
        let mut terms = self.terms.clone();
        terms.extend(other.terms.iter().cloned());
        LossExpr { terms, on_policy: self.on_policy.or(other.on_policy) }
    }

    /// Distinct temperatures the terms need: the engine computes one log-softmax each.
    pub fn temperatures(&self) -> Vec<Schedule> {
        let mut out: Vec<Schedule> = Vec::new();
        for (_, t) in &self.terms {
            if t.kind.is_kl_family() && !out.contains(&t.t) {
                out.push(t.t.clone());
            }
        }
        out
    }

    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, (w, t)) in self.terms.iter().enumerate() {
            let (negative, w) = match w.as_const() {
                Some(c) if c < 0.0 => (true, Schedule::Const(-c)),
                _ => (false, w.clone()),
            };
            let sign = match (i, negative) {
                (0, true) => "-",
                (0, false) => "",
                (_, true) => " - ",
                (_, false) => " + ",
            };
            let term = match w.as_const() {
                Some(c) if c == 1.0 => t.describe(),
                _ => format!("{}·{}", w.describe(), t.describe()),
            };
            out.push_str(sign);
            out.push_str(&term);
        }
        if let Some(p) = &self.on_policy {
            out.push_str(&format!(" on {}", p.describe()));
        }
        out
    }
}

/// Weight product that folds constants, so `0.5*kl(T=2)*T^2` reads back as `2·kl(T=2)`.
pub fn mul_weights(a: &Schedule, b: &Schedule) -> Schedule {
    use super::schedule::ArithOp;
    match (a.as_const(), b.as_const()) {
        (Some(x), Some(y)) => Schedule::Const(x * y),
        (Some(x), _) if x == 1.0 => b.clone(),
        (_, Some(y)) if y == 1.0 => a.clone(),
        _ => Schedule::Arith(ArithOp::Mul, Box::new(a.clone()), Box::new(b.clone())),
    }
}
