//! Matching call arguments to parameters, shared by the checker (abstract values) and the
//! evaluator (real values), so both report arity and naming mistakes the same way.

use super::Builtin;
use crate::diag::{Diagnostic, Span};
use crate::eval::Value;
use crate::kind::with_article;
use crate::spec::Schedule;
use crate::suggest::closest;
use crate::syntax::Ident;

#[derive(Debug, Clone, Copy)]
pub struct ParamShape<'a> {
    pub name: &'a str,
    pub required: bool,
}

fn signature(callee: &str, params: &[ParamShape]) -> String {
    let ps: Vec<String> =
        params.iter().map(|p| if p.required { p.name.to_string() } else { format!("{}=..", p.name) }).collect();
    format!("{callee}({})", ps.join(", "))
}

/// Binds `args` (positional first, then named) to `params`. Returns one slot per
/// parameter and every problem found; slots of bad arguments stay empty.
pub fn bind<A: Clone>(
    callee: &str,
    params: &[ParamShape],
    args: &[(Option<Ident>, Span, A)],
    call_span: Span,
) -> (Vec<Option<(A, Span)>>, Vec<Diagnostic>) {
    let mut slots: Vec<Option<(A, Span)>> = vec![None; params.len()];
    let mut diags = Vec::new();
    let sig = signature(callee, params);
    let mut positional = 0;
    for (name, span, value) in args {
        let index = match name {
            None => {
                let i = positional;
                positional += 1;
                if i >= params.len() {
                    let most = match params.len() {
                        0 => "no arguments".to_string(),
                        1 => "1 argument".to_string(),
                        n => format!("at most {n} arguments"),
                    };
                    diags.push(
                        Diagnostic::error(format!("`{callee}` takes {most}, but more were given"))
                            .label(*span, "this argument has no parameter to go to")
                            .help(format!("the signature is `{sig}`")),
                    );
                    continue;
                }
                i
            }
            Some(n) => match params.iter().position(|p| p.name == n.node) {
                Some(i) => i,
                None => {
                    let valid: Vec<&str> = params.iter().map(|p| p.name).collect();
                    let mut d = Diagnostic::error(format!("`{callee}` has no argument named `{}`", n.node))
                        .label(n.span, "unknown argument");
                    d = match closest(&n.node, valid.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`? valid arguments: {}", valid.join(", "))),
                        None if valid.is_empty() => d.help(format!("`{callee}` takes no arguments")),
                        None => d.help(format!("valid arguments: {}", valid.join(", "))),
                    };
                    diags.push(d);
                    continue;
                }
            },
        };
        if let Some((_, first)) = &slots[index] {
            diags.push(
                Diagnostic::error(format!("argument `{}` of `{callee}` is given twice", params[index].name))
                    .label(*span, "given again here")
                    .label(*first, "first given here"),
            );
            continue;
        }
        slots[index] = Some((value.clone(), *span));
    }
    for (p, slot) in params.iter().zip(&slots) {
        if p.required && slot.is_none() {
            diags.push(
                Diagnostic::error(format!("`{callee}` needs the argument `{}`", p.name))
                    .label(call_span, format!("`{}` is missing here", p.name))
                    .help(format!("the signature is `{sig}`")),
            );
        }
    }
    (slots, diags)
}

/// A builtin's arguments after binding, with table defaults filled in.
pub struct Args {
    pub builtin: &'static Builtin,
    pub values: Vec<Option<(Value, Span)>>,
    pub call_span: Span,
}

impl Args {
    fn index(&self, name: &str) -> usize {
        self.builtin
            .params
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("builtin `{}` has no parameter `{name}` in its table", self.builtin.name))
    }

    /// The value given, or the table default.
    pub fn get(&self, name: &str) -> Option<Value> {
        let i = self.index(name);
        match &self.values[i] {
            Some((v, _)) => Some(v.clone()),
            None => self.builtin.params[i].default_value(),
        }
    }

    /// An argument that takes one value or a list of them: the list's items, the one
    /// value alone, or nothing.
    pub fn items(&self, name: &str) -> Vec<Value> {
        match self.get(name) {
            Some(Value::List(l)) => l.to_vec(),
            Some(v) => vec![v],
            None => vec![],
        }
    }

    pub fn given(&self, name: &str) -> bool {
        self.values[self.index(name)].is_some()
    }

    /// Where the argument was written, or the call when it was not.
    pub fn span(&self, name: &str) -> Span {
        self.values[self.index(name)].as_ref().map(|(_, s)| *s).unwrap_or(self.call_span)
    }

    pub fn error(&self, name: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message).label(self.span(name), "here")
    }

    fn wrong_kind(&self, name: &str, want: &str, got: &Value) -> Diagnostic {
        Diagnostic::error(format!("`{}` of `{}` must be {want}", name, self.builtin.name))
            .label(self.span(name), format!("this is {}", with_article(got.kind())))
    }

    pub fn opt_num(&self, name: &str) -> Result<Option<f64>, Diagnostic> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Num(n)) => Ok(Some(n)),
            Some(other) => Err(self.wrong_kind(name, "a number", &other)),
        }
    }

    pub fn num(&self, name: &str) -> Result<f64, Diagnostic> {
        self.opt_num(name)?.ok_or_else(|| self.error(name, format!("`{}` needs `{name}`", self.builtin.name)))
    }

    pub fn opt_count(&self, name: &str) -> Result<Option<usize>, Diagnostic> {
        Ok(self.opt_num(name)?.map(|n| n as usize))
    }

    pub fn count(&self, name: &str) -> Result<usize, Diagnostic> {
        Ok(self.num(name)? as usize)
    }

    pub fn string(&self, name: &str) -> Result<String, Diagnostic> {
        match self.get(name) {
            Some(Value::Str(s)) => Ok(s.to_string()),
            Some(other) => Err(self.wrong_kind(name, "a string", &other)),
            None => Err(self.error(name, format!("`{}` needs `{name}`", self.builtin.name))),
        }
    }

    /// A string argument that may be left out.
    pub fn opt_str(&self, name: &str) -> Result<Option<String>, Diagnostic> {
        if self.given(name) {
            self.string(name).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn boolean(&self, name: &str) -> Result<bool, Diagnostic> {
        match self.get(name) {
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(self.wrong_kind(name, "true or false", &other)),
            None => Err(self.error(name, format!("`{}` needs `{name}`", self.builtin.name))),
        }
    }

    pub fn schedule(&self, name: &str) -> Result<Schedule, Diagnostic> {
        match self.get(name) {
            Some(v) => v.as_schedule().ok_or_else(|| self.wrong_kind(name, "a number or a schedule", &v)),
            None => Err(self.error(name, format!("`{}` needs `{name}`", self.builtin.name))),
        }
    }

    pub fn pair(&self, name: &str) -> Result<(f64, f64), Diagnostic> {
        match self.get(name) {
            Some(Value::List(items)) if items.len() == 2 => match (&items[0], &items[1]) {
                (Value::Num(a), Value::Num(b)) => Ok((*a, *b)),
                _ => Err(self.error(name, format!("`{name}` must be two numbers, like [0.9, 0.95]"))),
            },
            Some(other) => Err(self.wrong_kind(name, "a list of two numbers", &other)),
            None => Err(self.error(name, format!("`{}` needs `{name}`", self.builtin.name))),
        }
    }

    /// `graph=` of `train` and `generate`.
    pub fn graph_mode(&self) -> Result<crate::spec::GraphMode, Diagnostic> {
        crate::spec::GraphMode::parse(&self.string("graph")?)
            .map_err(|e| self.error("graph", e).help("\"auto\" captures each step as a CUDA graph where it can; \"on\" also says why when it cannot; \"off\" always runs eager"))
    }
}
