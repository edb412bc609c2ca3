//! Checking expressions: name resolution, calls against signatures, member access and
//! operator kinds. Constants are folded so later checks (ranges, vocab) see values.

use super::{Abs, Checker};
use crate::builtins::{self, bind, Args, Builtin, Family, ParamShape};
use crate::diag::{Diagnostic, Span};
use crate::eval::{member, ops, Value};
use crate::kind::{binary_rule, model_members, neg_rule, with_article, Kinds};
use crate::suggest::closest;
use crate::syntax::{Arg, Expr, Ident, Role, SExpr};
use std::rc::Rc;

type CheckedArgs = Vec<(Option<Ident>, Span, Abs)>;

impl Checker {
    fn lookup_user(&self, name: &str) -> Option<Abs> {
        self.state.scopes.iter().rev().find_map(|scope| scope.get(name).map(|b| b.abs.clone()))
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Abs> {
        if let Some(a) = self.lookup_user(name) {
            return Some(a);
        }
        if let Some(b) = builtins::lookup(name) {
            return Some(Abs::known(Value::Builtin(b)));
        }
        builtins::constants().into_iter().find(|(n, _, _)| *n == name).map(|(_, v, _)| Abs::known(v))
    }

    fn unresolved(&mut self, name: &str, span: Span) {
        let mut candidates: Vec<String> = self.state.scopes.iter().flat_map(|s| s.keys().cloned()).collect();
        candidates.extend(builtins::all().iter().map(|b| b.name.to_string()));
        candidates.extend(builtins::constants().into_iter().map(|(n, _, _)| n.to_string()));
        candidates.extend(Role::ALL.iter().map(|r| r.name().to_string()));
        let mut d = Diagnostic::error(format!("`{name}` is not defined")).label(span, "unknown name");
        if name == super::temperature::TEMPERATURE {
            d = d.help("`T` means the temperature of a kl(T=..) term in the same statement; this statement has none");
        } else if let Some(s) = closest(name, candidates.iter().map(|s| s.as_str())) {
            d = d.help(format!("did you mean `{s}`?"));
        } else if let Some(module) = stdlib_home(self, name) {
            d = d.help(format!("`{name}` is in the standard library: add `use {module}` first"));
        }
        self.report(d);
    }

    pub(crate) fn expr(&mut self, e: &SExpr) -> Abs {
        match &e.node {
            Expr::Num(n) => Abs::known(Value::Num(*n)),
            Expr::Str(s) => Abs::known(Value::str(s)),
            Expr::Bool(b) => Abs::known(Value::Bool(*b)),
            Expr::Name(n) => self.name(n, e.span),
            Expr::List(items) => {
                let parts: Vec<Abs> = items.iter().map(|x| self.expr(x)).collect();
                match parts.iter().map(|a| a.value.clone()).collect::<Option<Vec<_>>>() {
                    Some(vs) => Abs::known(Value::List(Rc::new(vs))),
                    None => Abs::of(Kinds::LIST),
                }
            }
            Expr::Neg(x) => {
                let a = self.expr(x);
                if let Some(v) = &a.value {
                    if let Ok(r) = ops::apply_neg(v) {
                        return Abs::known(r);
                    }
                }
                match neg_rule(a.kinds) {
                    Ok(k) => Abs { kinds: k, value: None, ..a },
                    Err(err) => {
                        self.report(Diagnostic::error(err.message).label(x.span, format!("this is {}", with_article(a.kinds))).help(err.help));
                        Abs::any()
                    }
                }
            }
            Expr::Binary { op, lhs, rhs } => {
                let (a, b) = (self.expr(lhs), self.expr(rhs));
                if let (Some(x), Some(y)) = (&a.value, &b.value) {
                    match ops::apply_binary(*op, x, y) {
                        Ok(v) => return Abs::known(v),
                        Err(err) if err.blame_rhs => {
                            self.report(Diagnostic::error(err.message).label(rhs.span, "this is 0").help(err.help));
                            return Abs::of(a.kinds);
                        }
                        Err(_) => {}
                    }
                }
                match binary_rule(*op, a.kinds, b.kinds) {
                    Ok(k) => Abs { needs_teacher: a.needs_teacher || b.needs_teacher, ..Abs::of(k) },
                    Err(err) => {
                        self.report(
                            Diagnostic::error(err.message)
                                .label(lhs.span, format!("this is {}", with_article(a.kinds)))
                                .label(rhs.span, format!("this is {}", with_article(b.kinds)))
                                .help(err.help),
                        );
                        Abs::any()
                    }
                }
            }
            Expr::Member { object, name } => {
                let obj = self.expr(object);
                self.member(&obj, name)
            }
            Expr::Index { object, index } => {
                let (o, i) = (self.expr(object), self.expr(index));
                if !o.kinds.fits(Kinds::LIST) {
                    self.report(Diagnostic::error(format!("cannot index {}", with_article(o.kinds))).label(object.span, "not a list"));
                }
                if !i.kinds.fits(Kinds::NUMBER) {
                    self.report(Diagnostic::error("a list index must be a number").label(index.span, format!("this is {}", with_article(i.kinds))));
                }
                match (&o.value, i.num()) {
                    (Some(Value::List(items)), Some(k)) if k >= 0.0 && (k as usize) < items.len() && k.fract() == 0.0 => {
                        Abs::known(items[k as usize].clone())
                    }
                    _ => Abs::any(),
                }
            }
            Expr::Call { callee, args } => self.call(callee, args, e.span),
            Expr::Error => Abs::any(),
        }
    }

    fn name(&mut self, n: &str, span: Span) -> Abs {
        // A role name reads its slot (`tokenizer.vocab`), unless the script defined it.
        let role = Role::from_name(n).filter(|_| self.lookup_user(n).is_none());
        if role.is_none() {
            if let Some(a) = self.lookup(n) {
                return a;
            }
        }
        if let Some(role) = role {
            if let Some(a) = self.state.slots.get(&role) {
                return a.clone();
            }
            self.report(
                Diagnostic::error(format!("`{n}` is used before it is set"))
                    .label(span, "not set yet")
                    .help(format!("set it earlier, e.g. `{n} ...`")),
            );
            return Abs::any();
        }
        if n == "previous" {
            self.report(
                Diagnostic::error("there is no previous stage here")
                    .label(span, "no stage before this one")
                    .help("`previous` names the stage before the current one; use it from the second `stage` block on"),
            );
            return Abs::any();
        }
        self.unresolved(n, span);
        Abs::any()
    }

    fn member(&mut self, obj: &Abs, name: &Ident) -> Abs {
        if let Some(v) = &obj.value {
            match member(v, name) {
                Ok(m) => return Abs::known(m),
                Err(d) if !matches!(v, Value::Model(_)) || !model_members().contains(&name.node.as_str()) => {
                    self.report(d);
                    return Abs::any();
                }
                // A model whose vocab is only known at run time: fall through.
                Err(_) => {}
            }
        }
        if let Some(members) = &obj.members {
            if let Some(a) = members.get(&name.node) {
                return a.clone();
            }
            let mut d = Diagnostic::error(format!("{} has no member `{}`", with_article(obj.kinds), name.node)).label(name.span, "unknown member");
            if let Some(s) = closest(&name.node, members.keys().map(|k| k.as_str())) {
                d = d.help(format!("did you mean `{s}`?"));
            } else if !members.is_empty() {
                d = d.help(format!("members: {}", members.keys().cloned().collect::<Vec<_>>().join(", ")));
            } else if obj.kinds == Kinds::STAGE {
                d = d.help("a stage's members are the role slots set in it (teacher, student, ...)");
            }
            self.report(d);
            return Abs::any();
        }
        if obj.kinds == Kinds::MODEL {
            if model_members().contains(&name.node.as_str()) {
                return Abs::of(if name.node == "tie" { Kinds::BOOL } else { Kinds::NUMBER });
            }
            let mut d = Diagnostic::error(format!("a model has no member `{}`", name.node)).label(name.span, "unknown member");
            d = match closest(&name.node, model_members().iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("members: {}", model_members().join(", "))),
            };
            self.report(d);
            return Abs::any();
        }
        if obj.kinds == Kinds::STAGE {
            // A stage chosen at run time (`best(...)`): its slots are known then.
            return Abs::any();
        }
        if obj.kinds == Kinds::TOKENIZER && name.node == "vocab" {
            return Abs::of(Kinds::NUMBER);
        }
        if !obj.kinds.is_any() && obj.kinds.is_single() {
            let mut d = Diagnostic::error(format!("{} has no member `{}`", with_article(obj.kinds), name.node)).label(name.span, "unknown member");
            if builtins::lookup(&name.node).is_some() {
                d = d.help(format!("`{0}` is a function: call it, as in `x.{0}(..)`", name.node));
            }
            self.report(d);
        }
        Abs::any()
    }

    fn args(&mut self, args: &[Arg]) -> CheckedArgs {
        args.iter().map(|a| (a.name.clone(), a.value.span, self.expr(&a.value))).collect()
    }

    fn call(&mut self, callee: &SExpr, args: &[Arg], span: Span) -> Abs {
        // `x.f(..)` is `f(x, ..)` when `x` has no member `f`.
        if let Expr::Member { object, name } = &callee.node {
            let obj = self.expr(object);
            let has_member = obj.members.as_ref().is_some_and(|m| m.contains_key(&name.node))
                || (obj.kinds == Kinds::MODEL && model_members().contains(&name.node.as_str()));
            if !has_member {
                if let Some(b) = builtins::lookup(&name.node) {
                    let mut checked = vec![(None, object.span, obj)];
                    checked.extend(self.args(args));
                    return self.call_builtin(b, checked, span);
                }
            }
        }
        // `tokenizer("x.json")` calls the builtin even though `tokenizer` is also a role.
        let f = match &callee.node {
            Expr::Name(n) if self.lookup_user(n).is_none() && builtins::lookup(n).is_some() => self.lookup(n).unwrap_or_else(Abs::any),
            _ => self.expr(callee),
        };
        let checked = self.args(args);
        // LoRA's alpha is a scale (alpha/rank), not a mixing weight.
        if !matches!(&f.value, Some(Value::Builtin(b)) if b.name == "lora") {
            self.alpha_lint(&checked);
        }
        if let Some(Value::Builtin(b)) = &f.value {
            return self.call_builtin(b, checked, span);
        }
        if let Some(sig) = f.func.clone() {
            let shapes: Vec<ParamShape> = sig.params.iter().map(|(n, req)| ParamShape { name: n, required: *req }).collect();
            let (_, diags) = bind(&sig.name, &shapes, &checked, span);
            for d in diags {
                self.report(d);
            }
            self.recheck_at_call(&sig, span);
            return sig.returns.clone();
        }
        // `ce(student)`, `ce(teacher)`: a loss bound to one model (the evaluator checks which).
        if f.kinds == Kinds::LOSS && args.len() == 1 {
            return Abs { needs_teacher: true, ..Abs::of(Kinds::LOSS) };
        }
        if !f.kinds.fits(Kinds::FUNCTION) {
            self.report(
                Diagnostic::error(format!("{} cannot be called", with_article(f.kinds)))
                    .label(callee.span, format!("this is {}, not a function", with_article(f.kinds))),
            );
        }
        Abs::any()
    }

    /// `alpha` mixes two loss terms; outside [0, 1] one of them gets a negative weight.
    fn alpha_lint(&mut self, args: &CheckedArgs) {
        for (name, span, a) in args {
            if let (Some(n), Some(x)) = (name, a.num()) {
                if n.node == "alpha" {
                    self.alpha_warning(x, *span);
                }
            }
        }
    }

    pub(crate) fn alpha_warning(&mut self, x: f64, span: Span) {
        if !(0.0..=1.0).contains(&x) {
            self.report(
                Diagnostic::warning(format!("alpha = {} is outside [0, 1]", crate::spec::fmt_num(x)))
                    .label(span, "here")
                    .note("alpha weighs hard-label ce against the teacher's soft loss: alpha·ce + (1−alpha)·kl; outside [0, 1] one term gets a negative weight"),
            );
        }
    }

    fn call_builtin(&mut self, b: &'static Builtin, args: CheckedArgs, span: Span) -> Abs {
        let (slots, diags) = bind(b.name, &b.shapes(), &args, span);
        let mut ok = diags.is_empty();
        for d in diags {
            self.report(d);
        }
        for (p, slot) in b.params.iter().zip(&slots) {
            let Some((a, at)) = slot else { continue };
            if !a.kinds.fits(p.kinds) {
                ok = false;
                let mut d = Diagnostic::error(format!("`{}` of `{}` must be {}", p.name, b.name, with_article(p.kinds)))
                    .label(*at, format!("this is {}", with_article(a.kinds)));
                if a.kinds == Kinds::FUNCTION && p.kinds.intersects(Kinds::LOSS) {
                    d = d.help("call it: kl(T=2), not kl");
                }
                self.report(d);
                continue;
            }
            if let Some(x) = a.num() {
                if let Some((msg, warn)) = p.range_problem(x) {
                    if warn {
                        self.report(Diagnostic::warning(msg).label(*at, "here"));
                    } else {
                        ok = false;
                        self.report(Diagnostic::error(msg).label(*at, "out of range"));
                    }
                }
            }
        }
        if !b.slots.is_empty() {
            self.check_action_inputs(b, &slots, span);
        }
        let returns = match b.name {
            "cosine" => {
                if slots.last().is_some_and(|s| s.is_some()) { Kinds::LOSS } else { Kinds::SCHEDULE }
            }
            _ => b.returns,
        };
        let needs_teacher = b.family == Family::Losses && returns == Kinds::LOSS;
        // Pure builtins on constants run now, so their own validation shows up here.
        if ok && b.pure {
            let values: Option<Vec<Option<(Value, Span)>>> = slots
                .iter()
                .map(|s| match s {
                    None => Some(None),
                    Some((a, at)) => a.value.clone().map(|v| Some((v, *at))),
                })
                .collect();
            if let Some(values) = values {
                return match (b.run)(&mut self.scratch, &Args { builtin: b, values, call_span: span }) {
                    Ok(v) => Abs::known(v),
                    Err(d) => {
                        self.report(d);
                        Abs { needs_teacher, ..Abs::of(returns) }
                    }
                };
            }
        }
        Abs { needs_teacher, ..Abs::of(returns) }
    }

    /// `train` and `eval` read role slots: report the unset ones here, before any work.
    fn check_action_inputs(&mut self, b: &Builtin, slots: &[Option<(Abs, Span)>], span: Span) {
        let arg = |name: &str| -> Option<Abs> {
            let i = b.params.iter().position(|p| p.name == name)?;
            slots[i].as_ref().map(|(a, _)| a.clone())
        };
        // `train(on=hard)` passes the data under another name.
        let given = |role: Role| -> Option<Abs> { arg(role.name()).or_else(|| if role == Role::Data { arg("on") } else { None }) };
        for role in b.slots {
            if given(*role).is_none() && !self.state.slots.contains_key(role) {
                self.slot_problem(builtins::missing_slot(b.name, *role, span));
            }
        }
        if b.name == "train" {
            let loss = given(Role::Loss).or_else(|| self.state.slots.get(&Role::Loss).cloned());
            let has_teacher = given(Role::Teacher).is_some() || self.state.slots.contains_key(&Role::Teacher);
            if let Some(l) = loss {
                if l.needs_teacher && !has_teacher {
                    let terms = match &l.value {
                        Some(Value::Loss(x)) => Some(builtins::teacher_terms(x)),
                        _ => None,
                    };
                    self.slot_problem(builtins::missing_teacher(terms, span));
                }
            }
            let named = |n: &str| b.params.iter().position(|p| p.name == n).is_some_and(|i| slots[i].is_some());
            if !named("steps") && !named("epochs") {
                self.report(builtins::missing_length(b.name, span));
            }
            if named("steps") && named("epochs") {
                self.report(Diagnostic::error("give `steps=` or `epochs=`, not both").label(span, "both given"));
            }
        }
    }
}

fn defines(stmt: &crate::syntax::SStmt, name: &str) -> bool {
    use crate::syntax::Stmt;
    match &stmt.node {
        Stmt::Let { name: n, .. } | Stmt::Def { name: n, .. } | Stmt::Assign { name: n, .. } => n.node == name,
        _ => false,
    }
}

/// The stdlib module that defines `name`, if one does.
fn stdlib_home(c: &Checker, name: &str) -> Option<&'static str> {
    crate::loader::stdlib_names()
        .into_iter()
        .find(|m| c.loader.borrow_mut().load_stdlib(m).is_some_and(|l| l.module.stmts.iter().any(|s| defines(s, name))))
}
