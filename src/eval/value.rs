//! Runtime values. Heavy things (models, data, tokenizers) sit behind `Rc` handles so
//! `let t2 = t` shares instead of copying; the engine's values (loaded models, tensors)
//! join this enum as further handle variants.

use super::env::Scope;
use super::model::{ModelValue, TensorValue};
use crate::builtins::Builtin;
use crate::kind::Kinds;
use crate::spec::{fmt_num, DataSpec, KeepRule, LayerMap, LossExpr, OptimSpec, Schedule};
use crate::syntax::{Param, SExpr};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Clone)]
pub enum Value {
    Nothing,
    Num(f64),
    Str(Rc<str>),
    Bool(bool),
    List(Rc<Vec<Value>>),
    Func(Rc<Closure>),
    Builtin(&'static Builtin),
    Model(Rc<ModelValue>),
    Tensor(Rc<TensorValue>),
    Loss(Rc<LossExpr>),
    Schedule(Rc<Schedule>),
    Optim(Rc<OptimSpec>),
    Data(Rc<DataSpec>),
    Tokenizer(Rc<TokenizerValue>),
    Layers(Rc<LayerMap>),
    Stage(Rc<StageValue>),
    Module(Rc<ModuleValue>),
    /// What `mine` keeps: `top(20%)`, `above(median)`, ...
    Rule(Rc<KeepRule>),
    /// What `train(teacher_cache=...)` keeps: `topk(64)`.
    Cache(Rc<crate::spec::train::TeacherCacheSpec>),
}

/// A `def`: parameters, body, and the scope it was defined in.
pub struct Closure {
    pub name: String,
    pub params: Vec<Param>,
    pub body: SExpr,
    pub scope: Rc<RefCell<Scope>>,
}

pub struct TokenizerValue {
    pub source: String,
    pub tokenizer: tokenizers::Tokenizer,
}

impl TokenizerValue {
    pub fn vocab(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}

/// A vocabulary size with the tokenizer that goes with it, and the slot they came from
/// (`Interp::vocab_source`).
pub struct VocabSource {
    pub vocab: usize,
    pub tokenizer: Option<Rc<TokenizerValue>>,
    pub from: crate::syntax::Role,
}

impl VocabSource {
    /// "the tokenizer slot's bpe(1 file)", "the teacher".
    pub fn describe(&self) -> String {
        match (self.from, &self.tokenizer) {
            (crate::syntax::Role::Tokenizer, Some(t)) => format!("the tokenizer slot's {}", t.source),
            _ => "the teacher".to_string(),
        }
    }
}

impl TokenizerValue {
    /// Whether two tokenizers turn text into the same ids (the same file, or the same
    /// definition read twice).
    pub fn same_as(&self, other: &TokenizerValue) -> bool {
        std::ptr::eq(self, other)
            || (self.vocab() == other.vocab() && self.tokenizer.to_string(false).ok() == other.tokenizer.to_string(false).ok())
    }
}

/// What a finished `stage NAME { ... }` leaves behind: its role slots, and the figures
/// of its last training (its row of the stage table).
pub struct StageValue {
    pub name: String,
    pub slots: BTreeMap<String, Value>,
    pub figures: Option<StageFigures>,
}

/// A stage's row of the stage table, readable as `NAME.val_ppl` and so on.
#[derive(Debug, Clone, Copy)]
pub struct StageFigures {
    pub params: u64,
    pub val_loss: f64,
    pub val_ppl: f64,
    /// Against the chain's first teacher, when a teacher was compared with.
    pub retention: Option<f64>,
}

impl StageFigures {
    /// The members a stage has besides its role slots.
    pub const MEMBERS: [&'static str; 4] = ["params", "val_loss", "val_ppl", "retention"];

    pub fn get(&self, member: &str) -> Option<Option<f64>> {
        Some(match member {
            "params" => Some(self.params as f64),
            "val_loss" => Some(self.val_loss),
            "val_ppl" => Some(self.val_ppl),
            "retention" => self.retention,
            _ => return None,
        })
    }
}

/// A `use`d module: its top-level names.
pub struct ModuleValue {
    pub name: String,
    pub names: BTreeMap<String, Value>,
}

impl Value {
    pub fn kind(&self) -> Kinds {
        match self {
            Value::Nothing => Kinds::NOTHING,
            Value::Num(_) => Kinds::NUMBER,
            Value::Str(_) => Kinds::STRING,
            Value::Bool(_) => Kinds::BOOL,
            Value::List(_) | Value::Layers(_) => Kinds::LIST,
            Value::Func(_) | Value::Builtin(_) => Kinds::FUNCTION,
            Value::Model(_) => Kinds::MODEL,
            Value::Tensor(_) => Kinds::TENSOR,
            Value::Loss(_) => Kinds::LOSS,
            Value::Schedule(_) => Kinds::SCHEDULE,
            Value::Optim(_) => Kinds::OPTIM,
            Value::Data(_) => Kinds::DATA,
            Value::Tokenizer(_) => Kinds::TOKENIZER,
            Value::Stage(_) => Kinds::STAGE,
            Value::Module(_) => Kinds::MODULE,
            Value::Rule(_) => Kinds::RULE,
            Value::Cache(_) => Kinds::CACHE,
        }
    }

    pub fn str(s: &str) -> Value {
        Value::Str(Rc::from(s))
    }

    /// Numbers are constant schedules wherever a schedule is expected.
    pub fn as_schedule(&self) -> Option<Schedule> {
        match self {
            Value::Num(n) => Some(Schedule::Const(*n)),
            Value::Schedule(s) => Some((**s).clone()),
            _ => None,
        }
    }

    /// One-line form, used inside lists and messages.
    pub fn short(&self) -> String {
        match self {
            Value::Nothing => "nothing".into(),
            Value::Num(n) => fmt_num(*n),
            Value::Str(s) => format!("{s:?}"),
            Value::Bool(b) => b.to_string(),
            Value::List(items) => format!("[{}]", items.iter().map(|v| v.short()).collect::<Vec<_>>().join(", ")),
            Value::Func(c) => format!("<def {}>", c.name),
            Value::Builtin(b) => format!("<builtin {}>", b.name),
            Value::Model(m) => m.one_line(),
            Value::Tensor(t) => t.describe(),
            Value::Loss(l) => l.describe(),
            Value::Schedule(s) => s.describe(),
            Value::Optim(o) => o.describe(),
            Value::Data(d) => d.describe(),
            Value::Tokenizer(t) => format!("tokenizer({:?}) [vocab {}]", t.source, t.vocab()),
            Value::Layers(l) => l.describe(),
            Value::Stage(s) => format!("<stage {}>", s.name),
            Value::Module(m) => format!("<module {}>", m.name),
            Value::Rule(r) => r.describe(),
            Value::Cache(c) => c.describe(),
        }
    }

    /// What `print` shows: multi-line for models, stages and modules.
    pub fn display(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            Value::Model(m) => m.describe(),
            Value::Stage(s) => {
                let mut out = format!("stage {}", s.name);
                for (k, v) in &s.slots {
                    out.push_str(&format!("\n  {k:<10} {}", v.short()));
                }
                if let Some(f) = &s.figures {
                    let retention = f.retention.map(|r| format!(", retention {:.1}%", 100.0 * r)).unwrap_or_default();
                    out.push_str(&format!("\n  {:<10} {} params, val loss {:.4}, val ppl {:.2}{retention}", "trained", crate::spec::fmt_count(f.params), f.val_loss, f.val_ppl));
                }
                out
            }
            Value::Module(m) => {
                let names: Vec<&str> = m.names.keys().map(|k| k.as_str()).collect();
                format!("module {}: {}", m.name, names.join(", "))
            }
            other => other.short(),
        }
    }

    /// Structural equality for `==`; handles compare by identity.
    pub fn equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Nothing, Value::Nothing) => true,
            (Value::Num(a), Value::Num(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::List(a), Value::List(b)) => a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.equals(y)),
            (Value::Model(a), Value::Model(b)) => a == b,
            (Value::Tensor(a), Value::Tensor(b)) => Rc::ptr_eq(a, b),
            (Value::Loss(a), Value::Loss(b)) => a == b,
            (Value::Schedule(a), Value::Schedule(b)) => a == b,
            (Value::Optim(a), Value::Optim(b)) => a == b,
            (Value::Data(a), Value::Data(b)) => a == b,
            (Value::Layers(a), Value::Layers(b)) => a == b,
            (Value::Builtin(a), Value::Builtin(b)) => std::ptr::eq(*a, *b),
            (Value::Func(a), Value::Func(b)) => Rc::ptr_eq(a, b),
            (Value::Tokenizer(a), Value::Tokenizer(b)) => Rc::ptr_eq(a, b),
            (Value::Stage(a), Value::Stage(b)) => Rc::ptr_eq(a, b),
            (Value::Module(a), Value::Module(b)) => Rc::ptr_eq(a, b),
            (Value::Rule(a), Value::Rule(b)) => a == b,
            (Value::Cache(a), Value::Cache(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}", self.short())
    }
}
