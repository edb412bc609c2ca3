//! The one table of builtin functions, grouped by family (one file each). The checker
//! reads their signatures, the evaluator calls them, and the REPL's completion and
//! `:help` list them: a builtin is declared once, here.

mod actions;
mod args;
mod cache;
mod core;
mod data;
mod explore;
mod export;
mod inference;
mod losses;
mod merging;
mod metrics;
mod mining;
mod models;
mod optim;
mod replay;
mod schedules;
mod synthesis;
mod training;

pub use actions::{missing_length, missing_slot, missing_teacher, teacher_terms};
pub use args::{bind, Args, ParamShape};

use crate::diag::Diagnostic;
use crate::eval::{Interp, Value};
use crate::kind::Kinds;
use crate::syntax::Role;
use crate::spec::fmt_num;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Core,
    Models,
    Losses,
    Schedules,
    Optim,
    Data,
    Inference,
    Explore,
    Actions,
    Replay,
    Metrics,
}

impl Family {
    /// Every family, in the order the reference (lang/builtins.md) and `:help` list them.
    pub const ALL: [Family; 11] = [
        Family::Core,
        Family::Models,
        Family::Losses,
        Family::Schedules,
        Family::Optim,
        Family::Data,
        Family::Inference,
        Family::Explore,
        Family::Actions,
        Family::Replay,
        Family::Metrics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Core => "core",
            Family::Models => "models",
            Family::Losses => "losses",
            Family::Schedules => "schedules",
            Family::Optim => "optimizers",
            Family::Data => "data",
            Family::Inference => "inference",
            Family::Explore => "explore",
            Family::Actions => "actions",
            Family::Replay => "replay",
            Family::Metrics => "metrics",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    Required,
    /// May be left out; there is no single default value (the builtin works it out).
    Optional,
    Num(f64),
    Str(&'static str),
    Bool(bool),
    Pair(f64, f64),
}

/// Value checks on a number argument, applied by the checker to constants and by the
/// evaluator to every call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    Any,
    Positive,
    NonNegative,
    PositiveInt,
    NonNegativeInt,
    /// Outside [0, 1] is allowed but suspicious: a warning.
    UnitWarn,
    /// Strictly between 0 and 1.
    OpenUnit,
}

#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kinds: Kinds,
    pub default: Default,
    pub range: Range,
    pub doc: &'static str,
}

pub type RunFn = fn(&mut Interp, &Args) -> Result<Value, Diagnostic>;

pub struct Builtin {
    pub name: &'static str,
    pub family: Family,
    pub params: Vec<ParamSpec>,
    pub returns: Kinds,
    pub doc: &'static str,
    pub example: &'static str,
    pub run: RunFn,
    /// Pure builtins (spec builders, math) are also run by the checker on constant
    /// arguments, so their validation errors show up in `kdl check`.
    pub pure: bool,
    /// Role slots the builtin reads when the same-named argument is not passed
    /// (`train` reads student, data, loss); the checker reports unset ones.
    pub slots: &'static [Role],
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Builtin({})", self.name)
    }
}

pub fn param(name: &'static str, kinds: Kinds, default: Default, doc: &'static str) -> ParamSpec {
    ParamSpec { name, kinds, default, range: Range::Any, doc }
}

impl ParamSpec {
    pub fn range(mut self, range: Range) -> Self {
        self.range = range;
        self
    }

    pub fn default_text(&self) -> Option<String> {
        match self.default {
            Default::Required | Default::Optional => None,
            Default::Num(n) => Some(fmt_num(n)),
            Default::Str(s) => Some(format!("{s:?}")),
            Default::Bool(b) => Some(b.to_string()),
            Default::Pair(a, b) => Some(format!("[{}, {}]", fmt_num(a), fmt_num(b))),
        }
    }

    pub fn default_value(&self) -> Option<Value> {
        match self.default {
            Default::Required | Default::Optional => None,
            Default::Num(n) => Some(Value::Num(n)),
            Default::Str(s) => Some(Value::str(s)),
            Default::Bool(b) => Some(Value::Bool(b)),
            Default::Pair(a, b) => Some(Value::List(std::rc::Rc::new(vec![Value::Num(a), Value::Num(b)]))),
        }
    }

    /// `None` when `x` is acceptable, else what is wrong and whether it is only a warning.
    pub fn range_problem(&self, x: f64) -> Option<(String, bool)> {
        let int = x.fract() == 0.0;
        let bad = |what: &str| Some((format!("`{}` must be {what}, got {}", self.name, fmt_num(x)), false));
        if !x.is_finite() {
            // An overflow (1e308 * 10) or 0/0 reaching a model or training argument.
            return Some((format!("`{}` must be a finite number, got {}", self.name, fmt_num(x)), false));
        }
        match self.range {
            Range::Any => None,
            Range::Positive if x <= 0.0 || x.is_nan() => bad("greater than 0"),
            Range::NonNegative if x < 0.0 || x.is_nan() => bad("0 or more"),
            Range::PositiveInt if x < 1.0 || !int => bad("a whole number of at least 1"),
            Range::NonNegativeInt if x < 0.0 || !int => bad("a whole number, 0 or more"),
            Range::OpenUnit if x <= 0.0 || x >= 1.0 || x.is_nan() => bad("between 0 and 1 (exclusive)"),
            Range::UnitWarn if !(0.0..=1.0).contains(&x) => {
                Some((format!("`{}` = {} is outside [0, 1]", self.name, fmt_num(x)), true))
            }
            _ => None,
        }
    }
}

impl Builtin {
    /// `adamw(lr=0.0003, betas=[0.9, 0.999], wd=0.01, eps=1e-8)`
    pub fn signature(&self) -> String {
        let ps: Vec<String> = self
            .params
            .iter()
            .map(|p| match (p.default, p.default_text()) {
                (_, Some(d)) => format!("{}={d}", p.name),
                (Default::Optional, None) => format!("{}=?", p.name),
                _ => p.name.to_string(),
            })
            .collect();
        format!("{}({})", self.name, ps.join(", "))
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn shapes(&self) -> Vec<ParamShape<'_>> {
        self.params
            .iter()
            .map(|p| ParamShape { name: p.name, required: p.default == Default::Required })
            .collect()
    }

    /// Full help text for `:help NAME` and the generated reference.
    pub fn help(&self) -> String {
        let mut out = format!("{}  -> {}\n  {}\n", self.signature(), self.returns, self.doc);
        for p in &self.params {
            out.push_str(&format!("    {:<10} {:<20} {}\n", p.name, p.kinds.to_string(), p.doc));
        }
        out.push_str(&format!("  example: {}\n", self.example));
        out
    }
}

/// The builtins a dry run (`kdl run --dry-run`) stops before: each trains, scores the
/// data with a model or writes, which is what a dry run promises not to do. `train`
/// prints its plan first. Loading models, data and tokenizers still runs, so a dry run
/// finds missing files, shape and vocabulary mismatches before any compute is spent.
/// (`topk` stops one too, in its table form only: `topk(64)` is a teacher cache.)
pub const DRY_RUN_STOPS_AT: &[&str] = &["train", "eval", "mine", "precompute", "merge", "average", "generate", "chat", "logits", "probe", "compare", "synthesize", "evaluate"];

/// Every builtin, in family order.
pub fn all() -> &'static [Builtin] {
    static TABLE: OnceLock<Vec<Builtin>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Vec::new();
        t.extend(core::table());
        t.extend(models::table());
        t.extend(losses::table());
        t.extend(schedules::table());
        t.extend(optim::table());
        t.extend(data::table());
        t.extend(inference::table());
        t.extend(export::table());
        t.extend(explore::table());
        t.extend(actions::table());
        t.extend(cache::table());
        t.extend(replay::table());
        t.extend(merging::table());
        t.extend(mining::table());
        t.extend(metrics::table());
        t.extend(synthesis::table());
        t
    })
}

pub fn lookup(name: &str) -> Option<&'static Builtin> {
    all().iter().find(|b| b.name == name)
}

/// Named constants that are not functions (`ce`, `pi`).
pub fn constants() -> Vec<(&'static str, Value, &'static str)> {
    let mut c = losses::constants();
    c.extend(mining::constants());
    c.push(("pi", Value::Num(std::f64::consts::PI), "π"));
    c
}
