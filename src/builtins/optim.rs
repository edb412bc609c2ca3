//! Optimizers. The learning rate may be a number or a schedule; a `schedule` slot, when
//! set, gives the learning rate instead.

use super::{param, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::eval::Value;
use crate::kind::Kinds;
use crate::spec::OptimSpec;
use std::rc::Rc;

fn positive_lr(a: &super::Args) -> Result<crate::spec::Schedule, Diagnostic> {
    let lr = a.schedule("lr")?;
    let (lo, _) = lr.range(lr.span_hint());
    if lo < 0.0 {
        return Err(a.error("lr", format!("the learning rate must not be negative, got {}", crate::spec::fmt_num(lo))));
    }
    Ok(lr)
}

pub fn table() -> Vec<Builtin> {
    let n = Kinds::NUMBER;
    vec![
        Builtin {
            name: "adamw",
            family: Family::Optim,
            params: vec![
                param("lr", Kinds::SCALAR, Num(3e-4), "learning rate (number or schedule)"),
                param("betas", Kinds::LIST, Pair(0.9, 0.999), "Adam's moment decay rates"),
                param("wd", n, Num(0.01), "decoupled weight decay").range(Range::NonNegative),
                param("eps", n, Num(1e-8), "denominator epsilon").range(Range::Positive),
            ],
            returns: Kinds::OPTIM,
            doc: "AdamW (decoupled weight decay)",
            example: "adamw(lr=5e-4, betas=[0.9, 0.95], wd=0.1)",
            run: |_, a| {
                let betas = a.pair("betas")?;
                for b in [betas.0, betas.1] {
                    if !(0.0..1.0).contains(&b) {
                        return Err(a.error("betas", "each beta must be in [0, 1)"));
                    }
                }
                Ok(Value::Optim(Rc::new(OptimSpec::AdamW { lr: positive_lr(a)?, betas, wd: a.num("wd")?, eps: a.num("eps")? })))
            },
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "sgd",
            family: Family::Optim,
            params: vec![
                param("lr", Kinds::SCALAR, Required, "learning rate (number or schedule)"),
                param("momentum", n, Num(0.0), "momentum").range(Range::NonNegative),
                param("wd", n, Num(0.0), "weight decay").range(Range::NonNegative),
            ],
            returns: Kinds::OPTIM,
            doc: "stochastic gradient descent with optional momentum",
            example: "sgd(lr=0.1, momentum=0.9)",
            run: |_, a| {
                Ok(Value::Optim(Rc::new(OptimSpec::Sgd { lr: positive_lr(a)?, momentum: a.num("momentum")?, wd: a.num("wd")? })))
            },
            pure: true,
            slots: &[],
        },
    ]
}
