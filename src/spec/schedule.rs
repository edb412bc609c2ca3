//! Schedules: values that change with the training step. They drive the learning rate,
//! and also loss weights and temperatures (`kl(T=linear(4, 1))`). Plain numbers are
//! constant schedules; arithmetic on schedules builds new ones.

use super::fmt_num;
use std::f64::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Const(f64),
    /// Ramps linearly from 0 to the next segment's first value (or 1) over `steps`.
    Warmup { steps: u64 },
    /// `steps: None` spans whatever is left of the run.
    Linear { from: f64, to: f64, steps: Option<u64> },
    Cosine { from: f64, to: f64, steps: Option<u64> },
    /// `from · gamma^(step / every)`, in whole intervals.
    Step { from: f64, gamma: f64, every: u64 },
    /// `a >> b >> ...`: segments in order.
    Chain(Vec<Schedule>),
    Arith(ArithOp, Box<Schedule>, Box<Schedule>),
}

impl Schedule {
    /// A fixed length in steps, or `None` when the segment stretches to fill the run.
    fn fixed_len(&self) -> Option<u64> {
        match self {
            Schedule::Warmup { steps } => Some(*steps),
            Schedule::Linear { steps, .. } | Schedule::Cosine { steps, .. } => *steps,
            Schedule::Chain(parts) => parts.iter().try_fold(0u64, |acc, p| p.fixed_len().map(|l| acc.saturating_add(l))),
            _ => None,
        }
    }

    /// A run length that shows the whole shape: the fixed segments, or 1000 steps.
    pub fn span_hint(&self) -> u64 {
        self.fixed_len().unwrap_or(0).saturating_add(1000)
    }

    pub fn as_const(&self) -> Option<f64> {
        match self {
            Schedule::Const(c) => Some(*c),
            _ => None,
        }
    }

    /// The value at `step` (0-based) of a run of `total` steps.
    pub fn at(&self, step: u64, total: u64) -> f64 {
        match self {
            Schedule::Const(c) => *c,
            Schedule::Warmup { steps } => ramp(step, *steps, 1.0),
            Schedule::Linear { from, to, steps } => {
                let len = steps.unwrap_or(total).max(1);
                from + (to - from) * (step.min(len) as f64 / len as f64)
            }
            Schedule::Cosine { from, to, steps } => {
                let len = steps.unwrap_or(total).max(1);
                let t = step.min(len) as f64 / len as f64;
                to + (from - to) * 0.5 * (1.0 + (PI * t).cos())
            }
            Schedule::Step { from, gamma, every } => from * gamma.powi((step / (*every).max(1)).min(i32::MAX as u64) as i32),
            Schedule::Chain(parts) => chain_at(parts, step, total),
            Schedule::Arith(op, a, b) => {
                let (x, y) = (a.at(step, total), b.at(step, total));
                match op {
                    ArithOp::Add => x + y,
                    ArithOp::Sub => x - y,
                    ArithOp::Mul => x * y,
                    ArithOp::Div => x / y,
                    ArithOp::Pow => x.powf(y),
                }
            }
        }
    }

    /// Smallest and largest value over a run (sampled), for range checks.
    pub fn range(&self, total: u64) -> (f64, f64) {
        let n = total.clamp(1, 2000);
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for i in 0..=n {
            let v = self.at(((i as u128 * total as u128) / n as u128) as u64, total);
            lo = lo.min(v);
            hi = hi.max(v);
        }
        (lo, hi)
    }

    pub fn describe(&self) -> String {
        match self {
            Schedule::Const(c) => fmt_num(*c),
            Schedule::Warmup { steps } => format!("warmup({steps})"),
            Schedule::Linear { from, to, steps } => {
                format!("linear({}, {}{})", fmt_num(*from), fmt_num(*to), steps_suffix(*steps))
            }
            Schedule::Cosine { from, to, steps } => {
                format!("cosine({}, {}{})", fmt_num(*from), fmt_num(*to), steps_suffix(*steps))
            }
            Schedule::Step { from, gamma, every } => {
                format!("step({}, gamma={}, every={})", fmt_num(*from), fmt_num(*gamma), every)
            }
            Schedule::Chain(parts) => parts.iter().map(|p| p.describe()).collect::<Vec<_>>().join(" >> "),
            Schedule::Arith(op, a, b) => {
                let sym = match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                    ArithOp::Pow => "^",
                };
                format!("({} {} {})", a.describe(), sym, b.describe())
            }
        }
    }
}

fn steps_suffix(steps: Option<u64>) -> String {
    steps.map(|s| format!(", steps={s}")).unwrap_or_default()
}

/// Step number `step` of `len` ramps 0 -> `to`; the first step already gets `to/len`
/// so no optimizer step is wasted at a zero learning rate.
fn ramp(step: u64, len: u64, to: f64) -> f64 {
    if step >= len {
        to
    } else {
        to * step.saturating_add(1) as f64 / len as f64
    }
}

fn chain_at(parts: &[Schedule], step: u64, total: u64) -> f64 {
    let fixed: u64 = parts.iter().filter_map(|p| p.fixed_len()).fold(0u64, |a, l| a.saturating_add(l));
    let stretchy = parts.iter().filter(|p| p.fixed_len().is_none()).count() as u64;
    let share = if stretchy == 0 { 0 } else { total.saturating_sub(fixed) / stretchy };
    let mut start: u64 = 0;
    for (i, part) in parts.iter().enumerate() {
        let len = part.fixed_len().unwrap_or(share);
        let last = i + 1 == parts.len();
        if step < start.saturating_add(len) || last {
            let local = step.saturating_sub(start);
            return match part {
                // A warm-up climbs to wherever the next segment starts.
                Schedule::Warmup { steps } => {
                    let target = parts.get(i + 1).map(|next| next.at(0, share.max(1))).unwrap_or(1.0);
                    ramp(local, *steps, target)
                }
                _ => part.at(local, len),
            };
        }
        start = start.saturating_add(len);
    }
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_peak_then_decays_to_floor() {
        let s = Schedule::Chain(vec![
            Schedule::Warmup { steps: 100 },
            Schedule::Cosine { from: 1e-3, to: 1e-4, steps: None },
        ]);
        assert!((s.at(0, 1100) - 1e-5).abs() < 1e-12);
        assert!((s.at(99, 1100) - 1e-3).abs() < 1e-12);
        assert!((s.at(100, 1100) - 1e-3).abs() < 1e-12);
        assert!((s.at(1100, 1100) - 1e-4).abs() < 1e-12);
        assert!((s.at(600, 1100) - 5.5e-4).abs() < 1e-9);
    }

    #[test]
    fn step_decay_halves_every_interval() {
        let s = Schedule::Step { from: 1.0, gamma: 0.5, every: 10 };
        assert_eq!(s.at(9, 100), 1.0);
        assert_eq!(s.at(10, 100), 0.5);
        assert_eq!(s.at(25, 100), 0.25);
    }

    #[test]
    fn arithmetic_on_schedules_is_pointwise() {
        let t = Schedule::Linear { from: 4.0, to: 1.0, steps: None };
        let t2 = Schedule::Arith(ArithOp::Pow, Box::new(t), Box::new(Schedule::Const(2.0)));
        assert_eq!(t2.at(0, 10), 16.0);
        assert_eq!(t2.at(10, 10), 1.0);
    }
}
