//! Kinds: what sort of value an expression produces. The checker computes them without
//! running anything; the evaluator reports them in runtime errors; builtin signatures are
//! written in them. A `Kinds` is a set, so a parameter can accept "number or schedule".

use std::fmt;
use std::ops::BitOr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Kinds(u32);

macro_rules! kinds {
    ($($name:ident = $bit:expr, $word:expr;)*) => {
        impl Kinds {
            $(pub const $name: Kinds = Kinds(1 << $bit);)*
            const NAMES: &'static [(Kinds, &'static str)] = &[$((Kinds::$name, $word)),*];
        }
    };
}

kinds! {
    NUMBER = 0, "number";
    STRING = 1, "string";
    BOOL = 2, "bool";
    LIST = 3, "list";
    FUNCTION = 4, "function";
    MODEL = 5, "model";
    LOSS = 6, "loss";
    SCHEDULE = 7, "schedule";
    OPTIM = 8, "optimizer";
    DATA = 9, "data";
    TOKENIZER = 10, "tokenizer";
    TENSOR = 11, "tensor";
    STAGE = 12, "stage";
    MODULE = 13, "module";
    NOTHING = 14, "nothing";
    RULE = 15, "keep rule";
    CACHE = 16, "teacher cache";
}

impl Kinds {
    pub const NONE: Kinds = Kinds(0);
    /// Unknown statically (a parameter of a `def`, say): accepted everywhere.
    pub const ANY: Kinds = Kinds((1 << 17) - 1);
    /// Where a schedule is accepted a plain number is too (a constant schedule).
    pub const SCALAR: Kinds = Kinds(Kinds::NUMBER.0 | Kinds::SCHEDULE.0);

    pub fn contains(self, other: Kinds) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Kinds) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_any(self) -> bool {
        self == Kinds::ANY
    }

    /// True when a value of kind `self` may be passed where `want` is required.
    pub fn fits(self, want: Kinds) -> bool {
        self.is_any() || want.is_any() || self.intersects(want)
    }

    /// Exactly one kind, known statically.
    pub fn is_single(self) -> bool {
        self.0.count_ones() == 1
    }
}

impl BitOr for Kinds {
    type Output = Kinds;
    fn bitor(self, rhs: Kinds) -> Kinds {
        Kinds(self.0 | rhs.0)
    }
}

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.is_any() {
            return write!(f, "any value");
        }
        let names: Vec<&str> = Kinds::NAMES.iter().filter(|(k, _)| self.contains(*k)).map(|(_, n)| *n).collect();
        match names.as_slice() {
            [] => write!(f, "no value"),
            [one] => write!(f, "{one}"),
            [init @ .., last] => write!(f, "{} or {}", init.join(", "), last),
        }
    }
}

impl fmt::Debug for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Kinds({self})")
    }
}

/// "a number", "an optimizer": for messages.
pub fn with_article(k: Kinds) -> String {
    let s = k.to_string();
    // Mass nouns take no article: "must be data", "this is nothing".
    if k.is_any() || !k.is_single() || k == Kinds::DATA || k == Kinds::NOTHING {
        return s;
    }
    let article = if s.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {s}")
}

use crate::syntax::{BinOp, Role};

/// What each role slot holds. Strings are accepted where kdl can make the value from a
/// path (`data "corpus.txt"`, `tokenizer "tokenizer.json"`).
pub fn role_accepts(role: Role) -> Kinds {
    match role {
        Role::Teacher | Role::Student => Kinds::MODEL,
        Role::Tokenizer => Kinds::TOKENIZER | Kinds::STRING,
        Role::Data => Kinds::DATA | Kinds::STRING,
        Role::Loss => Kinds::LOSS,
        Role::Optim => Kinds::OPTIM,
        Role::Schedule => Kinds::SCALAR,
    }
}

/// Why an operator does not apply, with a hint for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    pub message: String,
    pub help: String,
    /// The right operand's value is the problem (division by zero), not the kinds.
    pub blame_rhs: bool,
}

fn op_err(message: String, help: &str) -> Result<Kinds, OpError> {
    Err(OpError { message, help: help.to_string(), blame_rhs: false })
}

/// The kind an operator produces from operand kinds: the language's arithmetic rules in
/// one place. Losses form linear combinations weighted by numbers or schedules;
/// schedules combine pointwise with numbers; `>>` chains schedules.
pub fn binary_rule(op: BinOp, a: Kinds, b: Kinds) -> Result<Kinds, OpError> {
    use BinOp::*;
    let (n, s, l) = (Kinds::NUMBER, Kinds::SCHEDULE, Kinds::LOSS);
    let scalar = Kinds::SCALAR;
    if a.is_any() || b.is_any() {
        // One side unknown: guess from the known side so later checks still work.
        let known = if a.is_any() { b } else { a };
        return Ok(match op {
            _ if op.is_comparison() => Kinds::BOOL,
            Chain => s,
            Mul | Div if known == l => l,
            Add | Sub if known == l => l,
            _ if known == s => s | n,
            _ => Kinds::ANY,
        });
    }
    let pair = format!("{} {} {}", with_article(a), op.symbol(), with_article(b));
    if op.is_comparison() {
        return match op {
            Eq | Ne => Ok(Kinds::BOOL),
            _ if a == n && b == n => Ok(Kinds::BOOL),
            _ => op_err(format!("cannot order {pair}"), "`<`, `<=`, `>`, `>=` compare numbers"),
        };
    }
    match op {
        Chain if scalar.contains(a) && scalar.contains(b) => Ok(s),
        Chain => op_err(format!("cannot chain {pair}"), "`>>` joins schedules, e.g. warmup(200) >> cosine(5e-4, 5e-5)"),
        _ if a == n && b == n => Ok(n),
        _ if scalar.contains(a) && scalar.contains(b) => Ok(s),
        Mul if (a == l && scalar.contains(b)) || (scalar.contains(a) && b == l) => Ok(l),
        Div if a == l && scalar.contains(b) => Ok(l),
        Add | Sub if a == l && b == l => Ok(l),
        Mul if a == l && b == l => op_err(
            "cannot multiply two losses".into(),
            "a loss is a weighted sum of terms: weight each term by a number or schedule and add them, e.g. 0.5*ce + 0.5*kl(T=2)",
        ),
        Add | Sub if a == l || b == l => op_err(
            format!("cannot add {} to a loss", with_article(if a == l { b } else { a })),
            "a constant added to a loss has no gradient; to weight a term, multiply it: 0.5*ce",
        ),
        Div if b == l => op_err(format!("cannot divide by a loss ({pair})"), "divide a loss by a number or schedule instead"),
        Pow if a == l || b == l => op_err("cannot raise a loss to a power".into(), "losses combine linearly: weights times terms, added"),
        Add if a == Kinds::STRING && b == Kinds::STRING => Ok(Kinds::STRING),
        Add if a == Kinds::LIST && b == Kinds::LIST => Ok(Kinds::LIST),
        _ if a == Kinds::MODEL || b == Kinds::MODEL => op_err(
            format!("cannot use `{}` on {pair}", op.symbol()),
            "a model describes an architecture; arithmetic works on numbers, schedules and losses (use .params or .dim for its numbers)",
        ),
        _ => op_err(format!("cannot use `{}` on {pair}", op.symbol()), "arithmetic works on numbers, schedules and losses"),
    }
}

/// Unary minus: numbers, schedules and losses.
pub fn neg_rule(a: Kinds) -> Result<Kinds, OpError> {
    if a.is_any() || a == Kinds::NUMBER || a == Kinds::SCHEDULE || a == Kinds::LOSS {
        Ok(a)
    } else {
        op_err(format!("cannot negate {}", with_article(a)), "`-` applies to numbers, schedules and losses")
    }
}

/// Members readable with `.name` on each kind (besides module and stage names).
pub fn model_members() -> &'static [&'static str] {
    &["layers", "dim", "heads", "kv_heads", "head_dim", "ffn", "vocab", "params", "tie"]
}

/// What `save VALUE to PATH` writes, for the checker and the evaluator alike.
pub const SAVEABLE: Kinds = Kinds(Kinds::MODEL.0 | Kinds::TOKENIZER.0 | Kinds::TENSOR.0);
pub const SAVE_HELP: &str = "`save` writes models (a Hugging Face folder), tokenizers (tokenizer.json) and tensors (.safetensors)";
