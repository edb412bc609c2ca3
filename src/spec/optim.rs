//! Optimizer specs: `adamw(...)` and `sgd(...)`. The learning rate may be a schedule.

use super::{fmt_num, Schedule};

#[derive(Debug, Clone, PartialEq)]
pub enum OptimSpec {
    AdamW { lr: Schedule, betas: (f64, f64), wd: f64, eps: f64 },
    Sgd { lr: Schedule, momentum: f64, wd: f64 },
}

impl OptimSpec {
    pub fn lr(&self) -> &Schedule {
        match self {
            OptimSpec::AdamW { lr, .. } | OptimSpec::Sgd { lr, .. } => lr,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            OptimSpec::AdamW { lr, betas, wd, eps } => format!(
                "adamw(lr={}, betas=[{}, {}], wd={}, eps={})",
                lr.describe(),
                fmt_num(betas.0),
                fmt_num(betas.1),
                fmt_num(*wd),
                fmt_num(*eps)
            ),
            OptimSpec::Sgd { lr, momentum, wd } => {
                format!("sgd(lr={}, momentum={}, wd={})", lr.describe(), fmt_num(*momentum), fmt_num(*wd))
            }
        }
    }
}
