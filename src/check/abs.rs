//! Abstract values: what the checker knows about an expression without running it — its
//! kinds, and its value when it is a constant (pure builtins on constants are folded).

use crate::eval::Value;
use crate::kind::Kinds;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Clone)]
pub struct Abs {
    pub kinds: Kinds,
    pub value: Option<Value>,
    pub func: Option<Rc<FuncSig>>,
    pub members: Option<Rc<BTreeMap<String, Abs>>>,
    /// A loss with teacher terms (kl, mse, ...).
    pub needs_teacher: bool,
}

/// What the checker knows of a `def`.
pub struct FuncSig {
    pub name: String,
    pub params: Vec<(String, bool)>,
    pub returns: Abs,
    /// The body, checked again at each call for what only the call site knows: the role
    /// slots a `train` or `eval` inside reads (def bodies are late-bound).
    pub body: Option<Rc<crate::syntax::SExpr>>,
}

impl Abs {
    pub fn of(kinds: Kinds) -> Abs {
        Abs { kinds, value: None, func: None, members: None, needs_teacher: false }
    }

    pub fn any() -> Abs {
        Abs::of(Kinds::ANY)
    }

    pub fn known(value: Value) -> Abs {
        let needs_teacher = matches!(&value, Value::Loss(l) if l.needs_teacher());
        let members = match &value {
            Value::Module(m) => Some(Rc::new(m.names.iter().map(|(k, v)| (k.clone(), Abs::known(v.clone()))).collect())),
            _ => None,
        };
        Abs { kinds: value.kind(), value: Some(value), func: None, members, needs_teacher }
    }

    pub fn num(&self) -> Option<f64> {
        match self.value {
            Some(Value::Num(n)) => Some(n),
            _ => None,
        }
    }

    /// Forget the constant but keep what kind of thing it is.
    pub fn unknown_value(mut self) -> Abs {
        self.value = None;
        self
    }
}
