//! Evaluating expressions: names, calls (builtins, defs, and `x.f(..)` as `f(x, ..)`),
//! members, indexing and operators.

use super::interp::Interp;
use super::ops::{apply_binary, apply_neg};
use super::env::Scope;
use super::value::{Closure, Value};
use crate::builtins::{bind, Args, Builtin, ParamShape};
use crate::diag::{Diagnostic, Span};
use crate::kind::{model_members, with_article, OpError};
use crate::spec::fmt_num;
use crate::syntax::{Expr, Ident, Role, SExpr};
use std::rc::Rc;

/// Deep enough for any sensible script; stops runaway recursion before the stack does.
const MAX_CALL_DEPTH: usize = 200;

pub type CallArgs = Vec<(Option<Ident>, Span, Value)>;

fn op_error(e: OpError, span: Span, parts: &[(&SExpr, &Value)]) -> Diagnostic {
    if let (true, Some((rhs, _))) = (e.blame_rhs, parts.last()) {
        return Diagnostic::error(e.message).label(rhs.span, "this is 0").help(e.help);
    }
    let mut d = Diagnostic::error(e.message);
    if parts.is_empty() {
        d = d.label(span, "here");
    }
    for (x, v) in parts {
        d = d.label(x.span, format!("this is {}", with_article(v.kind())));
    }
    d.help(e.help)
}

impl Interp {
    pub fn eval(&mut self, e: &SExpr) -> Result<Value, Diagnostic> {
        match &e.node {
            Expr::Num(n) => Ok(Value::Num(*n)),
            Expr::Str(s) => Ok(Value::str(s)),
            Expr::Bool(b) => Ok(Value::Bool(*b)),
            Expr::Name(n) => self.lookup(n, e.span),
            Expr::List(items) => {
                let vs = items.iter().map(|x| self.eval(x)).collect::<Result<Vec<_>, _>>()?;
                Ok(Value::List(Rc::new(vs)))
            }
            Expr::Neg(x) => {
                let v = self.eval(x)?;
                apply_neg(&v).map_err(|err| op_error(err, e.span, &[(x, &v)]))
            }
            Expr::Binary { op, lhs, rhs } => {
                let (a, b) = (self.eval(lhs)?, self.eval(rhs)?);
                apply_binary(*op, &a, &b).map_err(|err| op_error(err, e.span, &[(lhs, &a), (rhs, &b)]))
            }
            Expr::Member { object, name } => {
                let v = self.eval(object)?;
                member(&v, name)
            }
            Expr::Index { object, index } => {
                let (v, i) = (self.eval(object)?, self.eval(index)?);
                index_value(&v, &i, object.span, index.span)
            }
            Expr::Call { callee, args } => self.eval_call(callee, args, e.span),
            Expr::Error => Err(Diagnostic::error("this expression did not parse").label(e.span, "here")),
        }
    }

    fn lookup(&self, name: &str, span: Span) -> Result<Value, Diagnostic> {
        let found = self.scope.borrow().get(name);
        // A role name reads its slot unless the script bound the name itself; the
        // builtin of the same name (`tokenizer`) is reached by calling it.
        let role = Role::from_name(name).filter(|_| matches!(found, None | Some(Value::Builtin(_))));
        if let (Some(v), None) = (&found, role) {
            return Ok(v.clone());
        }
        if let Some(role) = role {
            return self.slot(role).ok_or_else(|| {
                Diagnostic::error(format!("`{name}` is not set yet"))
                    .label(span, "used here")
                    .help(format!("set it before this line, e.g. `{name} ...`"))
            });
        }
        Err(Diagnostic::error(format!("`{name}` is not defined")).label(span, "unknown name"))
    }

    fn eval_args(&mut self, args: &[crate::syntax::Arg]) -> Result<CallArgs, Diagnostic> {
        args.iter().map(|a| Ok((a.name.clone(), a.value.span, self.eval(&a.value)?))).collect()
    }

    fn eval_call(&mut self, callee: &SExpr, args: &[crate::syntax::Arg], span: Span) -> Result<Value, Diagnostic> {
        // `x.f(..)` calls the builtin `f` with `x` first, unless `x` has a member `f`.
        if let Expr::Member { object, name } = &callee.node {
            let obj = self.eval(object)?;
            if member(&obj, name).is_err() {
                if let Some(b) = crate::builtins::lookup(&name.node) {
                    let mut call_args = vec![(None, object.span, obj)];
                    call_args.extend(self.eval_args(args)?);
                    return self.call_builtin(b, call_args, span);
                }
            }
        }
        let f = match &callee.node {
            Expr::Name(n) => match self.scope.borrow().get(n) {
                Some(v @ Value::Builtin(_)) => Some(v),
                _ => None,
            },
            _ => None,
        };
        let f = match f {
            Some(f) => f,
            None => self.eval(callee)?,
        };
        let call_args = self.eval_args(args)?;
        self.call_value(&f, call_args, callee.span, span)
    }

    pub fn call_value(&mut self, f: &Value, args: CallArgs, callee_span: Span, span: Span) -> Result<Value, Diagnostic> {
        match f {
            Value::Builtin(b) => self.call_builtin(b, args, span),
            Value::Func(c) => self.call_closure(c, args, span),
            Value::Loss(l) => self.bind_loss(l, args, callee_span, span),
            other => Err(Diagnostic::error(format!("{} cannot be called", with_article(other.kind())))
                .label(callee_span, format!("this is {}, not a function", with_article(other.kind())))),
        }
    }

    /// `ce(teacher)`: cross-entropy of a named model, for `mine(difficulty=...)`. The model
    /// must be the student or the teacher (the slots, or mine's student=/teacher=).
    fn bind_loss(&mut self, l: &crate::spec::LossExpr, args: CallArgs, callee_span: Span, span: Span) -> Result<Value, Diagnostic> {
        use crate::spec::{Of, TermKind};
        let help = "write ce(student) or ce(teacher); mine(student=..., teacher=...) chooses which models those are";
        let single_ce = matches!(l.terms.as_slice(), [(_, t)] if t.kind == TermKind::Ce && t.of.is_none());
        if !single_ce {
            return Err(Diagnostic::error(format!("only `ce` can be given a model; `{}` compares the student with the teacher already", l.describe()))
                .label(callee_span, "this loss takes no model")
                .help(help));
        }
        let [(None, arg_span, value)] = args.as_slice() else {
            return Err(Diagnostic::error("`ce(...)` takes one model: ce(student) or ce(teacher)").label(span, "here").help(help));
        };
        let of = match value {
            Value::Model(_) if self.slot(Role::Student).is_some_and(|s| s.equals(value)) => Of::Student,
            Value::Model(_) if self.slot(Role::Teacher).is_some_and(|s| s.equals(value)) => Of::Teacher,
            other => {
                return Err(Diagnostic::error(format!("`ce(...)` scores the student or the teacher, but this is {}", with_article(other.kind())))
                    .label(*arg_span, "not the student or teacher slot")
                    .help(help))
            }
        };
        let mut bound = l.clone();
        bound.terms[0].1.of = Some(of);
        Ok(Value::Loss(Rc::new(bound)))
    }

    pub fn call_builtin(&mut self, b: &'static Builtin, args: CallArgs, span: Span) -> Result<Value, Diagnostic> {
        let (slots, diags) = bind(b.name, &b.shapes(), &args, span);
        if let Some(d) = diags.into_iter().next() {
            return Err(d);
        }
        for (p, slot) in b.params.iter().zip(&slots) {
            let Some((v, at)) = slot else { continue };
            if !v.kind().fits(p.kinds) {
                return Err(Diagnostic::error(format!("`{}` of `{}` must be {}", p.name, b.name, with_article(p.kinds)))
                    .label(*at, format!("this is {}", with_article(v.kind()))));
            }
            if let Value::Num(x) = v {
                if let Some((msg, false)) = p.range_problem(*x) {
                    return Err(Diagnostic::error(msg).label(*at, "out of range"));
                }
            }
        }
        if self.dry_run && b.name != "train" && crate::builtins::DRY_RUN_STOPS_AT.contains(&b.name) {
            return Err(self.stop_dry_run(&format!("`{}`", b.name), span));
        }
        (b.run)(self, &Args { builtin: b, values: slots, call_span: span })
    }

    fn call_closure(&mut self, c: &Rc<Closure>, args: CallArgs, span: Span) -> Result<Value, Diagnostic> {
        let shapes: Vec<ParamShape> =
            c.params.iter().map(|p| ParamShape { name: &p.name.node, required: p.default.is_none() }).collect();
        let (slots, diags) = bind(&c.name, &shapes, &args, span);
        if let Some(d) = diags.into_iter().next() {
            return Err(d);
        }
        if self.depth >= MAX_CALL_DEPTH {
            return Err(Diagnostic::error(format!("calls nest deeper than {MAX_CALL_DEPTH} levels"))
                .label(span, "while calling this")
                .help(format!("`{}` probably calls itself without end", c.name)));
        }
        let frame = Scope::child(&c.scope);
        let outer = std::mem::replace(&mut self.scope, frame);
        self.depth += 1;
        let result = (|| {
            for (p, slot) in c.params.iter().zip(slots) {
                let v = match (slot, &p.default) {
                    (Some((v, _)), _) => v,
                    // Defaults are evaluated at call time, in the def's scope.
                    (None, Some(d)) => self.eval(d)?,
                    (None, None) => unreachable!("bind reports missing required arguments"),
                };
                self.scope.borrow_mut().define(&p.name.node, v);
            }
            let body = c.body.clone();
            self.eval_in_statement(&body, &[&body])
        })();
        self.depth -= 1;
        self.scope = outer;
        // Point at the call too: the error may sit inside a stdlib or `use`d file.
        result.map_err(|d| if d.labels.iter().any(|l| l.span == span) { d } else { d.label(span, format!("in this call to `{}`", c.name)) })
    }
}

/// `value.name`: model fields, stage slots, module names.
pub fn member(v: &Value, name: &Ident) -> Result<Value, Diagnostic> {
    let n = name.node.as_str();
    let found = match v {
        Value::Model(m) => match n {
            "layers" => Some(Value::Num(m.layers as f64)),
            "dim" => Some(Value::Num(m.dim as f64)),
            "heads" => Some(Value::Num(m.heads as f64)),
            "kv_heads" => Some(Value::Num(m.kv_heads as f64)),
            "head_dim" => Some(Value::Num(m.head_dim() as f64)),
            "ffn" => Some(Value::Num(m.ffn as f64)),
            "tie" => Some(Value::Bool(m.tie)),
            "vocab" => match m.vocab {
                Some(v) => Some(Value::Num(v as f64)),
                None => {
                    return Err(Diagnostic::error("this model's vocabulary size is not known yet")
                        .label(name.span, "vocab")
                        .help("pass vocab= to llama(...), or set a tokenizer or teacher before the student"))
                }
            },
            "params" => match m.params() {
                Some(p) => Some(Value::Num(p as f64)),
                None => {
                    return Err(Diagnostic::error("this model's parameter count needs its vocabulary size")
                        .label(name.span, "params")
                        .help("pass vocab= to llama(...), or set a tokenizer or teacher before the student"))
                }
            },
            _ => None,
        },
        Value::Tokenizer(t) if n == "vocab" => Some(Value::Num(t.vocab() as f64)),
        Value::Stage(s) if n == "name" && !s.slots.contains_key(n) => Some(Value::str(&s.name)),
        Value::Stage(s) if !s.slots.contains_key(n) && crate::eval::StageFigures::MEMBERS.contains(&n) => {
            let why = match &s.figures {
                None => format!("stage `{}` trained nothing, so it has no `{n}`", s.name),
                Some(f) => match f.get(n).flatten() {
                    Some(x) => return Ok(Value::Num(x)),
                    None => format!("stage `{}` has no retention: no teacher was compared with", s.name),
                },
            };
            return Err(Diagnostic::error(why).label(name.span, n).help("a stage's figures come from the last train(...) in it"));
        }
        Value::Stage(s) => s.slots.get(n).cloned(),
        Value::Module(m) => m.names.get(n).cloned(),
        _ => None,
    };
    found.ok_or_else(|| {
        let known: Vec<String> = match v {
            Value::Model(_) => model_members().iter().map(|s| s.to_string()).collect(),
            Value::Stage(s) => s.slots.keys().cloned().chain(["name"].into_iter().chain(crate::eval::StageFigures::MEMBERS).map(String::from)).collect(),
            Value::Module(m) => m.names.keys().cloned().collect(),
            Value::Tokenizer(_) => vec!["vocab".into()],
            _ => vec![],
        };
        let mut d = Diagnostic::error(format!("{} has no member `{n}`", with_article(v.kind()))).label(name.span, "unknown member");
        if let Some(s) = crate::suggest::closest(n, known.iter().map(|s| s.as_str())) {
            d = d.help(format!("did you mean `{s}`?"));
        } else if !known.is_empty() {
            d = d.help(format!("members: {}", known.join(", ")));
        } else if matches!(v, Value::Stage(_)) {
            d = d.help("a stage's members are the role slots set in it (teacher, student, ...)");
        }
        d
    })
}

fn index_value(v: &Value, i: &Value, at: Span, index_at: Span) -> Result<Value, Diagnostic> {
    let Value::List(items) = v else {
        return Err(Diagnostic::error(format!("cannot index {}", with_article(v.kind()))).label(at, "not a list"));
    };
    let Value::Num(x) = i else {
        return Err(Diagnostic::error("a list index must be a number").label(index_at, format!("this is {}", with_article(i.kind()))));
    };
    let n = items.len() as f64;
    let k = if *x < 0.0 { n + x } else { *x };
    if k.fract() != 0.0 || k < 0.0 || k >= n {
        return Err(Diagnostic::error(format!("index {} is out of range for a list of {} item{}", fmt_num(*x), items.len(), if items.len() == 1 { "" } else { "s" }))
            .label(index_at, "out of range"));
    }
    Ok(items[k as usize].clone())
}
