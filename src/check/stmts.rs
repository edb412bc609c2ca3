//! Checking statements: bindings and duplicates, `def`, `use`, role slots, stages, and
//! the per-statement temperature rules.

use super::temperature::{self, Binding, TEMPERATURE};
use super::{Abs, Bound, Checker, FuncSig};
use crate::diag::{Diagnostic, Span};
use crate::eval::Value;
use crate::kind::{role_accepts, with_article, Kinds};
use crate::syntax::{Ident, Role, SExpr, SStmt, Stmt, UseTarget};
use std::collections::BTreeMap;
use std::rc::Rc;

impl Checker {
    pub(crate) fn stmt(&mut self, stmt: &SStmt) {
        match &stmt.node {
            Stmt::Let { name, value } => {
                let a = self.statement_expr(value, &[value]);
                if let (true, Some(x)) = (name.node == "alpha", a.num()) {
                    self.alpha_warning(x, value.span);
                }
                self.define(name, a, true);
            }
            Stmt::Assign { name, value } => {
                let a = self.statement_expr(value, &[value]);
                self.define(name, a, false);
            }
            Stmt::Def { name, params, body } => self.def(name, params, body),
            Stmt::Use(target) => self.use_(target),
            Stmt::Role { role, value } => {
                let a = self.statement_expr(value, &[value]);
                self.set_slot(role.node, a, value.span);
            }
            Stmt::Save { value, path } => {
                let v = self.statement_expr(value, &[value]);
                let p = self.expr(path);
                if !v.kinds.fits(crate::kind::SAVEABLE) {
                    self.report(
                        Diagnostic::error(format!("cannot save {}", with_article(v.kinds)))
                            .label(value.span, format!("this is {}", with_article(v.kinds)))
                            .help(crate::kind::SAVE_HELP),
                    );
                }
                if !p.kinds.fits(Kinds::STRING) {
                    self.report(Diagnostic::error("`save ... to` needs a path string").label(path.span, format!("this is {}", with_article(p.kinds))));
                }
            }
            Stmt::Print(exprs) => {
                // Printing a term to look at it is not using it: no T² lint here.
                let refs: Vec<&SExpr> = exprs.iter().collect();
                for e in exprs {
                    self.statement_expr_unlinted(e, &refs);
                }
            }
            Stmt::Stage { name, body } => self.stage(name, body),
            Stmt::Require(cond) => {
                // The figures of the last training, as the evaluator binds them.
                self.with_scope(|c| {
                    for name in ["retention", "ppl", "val_loss", "params"] {
                        c.bind_local(name, Abs::of(Kinds::NUMBER), cond.span);
                    }
                    let a = c.statement_expr_unlinted(cond, &[cond]);
                    if !a.kinds.fits(Kinds::BOOL) {
                        c.report(
                            Diagnostic::error(format!("`require` needs a condition, got {}", with_article(a.kinds)))
                                .label(cond.span, "not true or false")
                                .help("e.g. require retention >= 85%"),
                        );
                    }
                });
            }
            Stmt::Expr(e) => {
                self.statement_expr(e, &[e]);
            }
            Stmt::Error => {}
        }
    }

    /// Checks `e` under the statement's temperature binding, and lints T² scaling.
    fn statement_expr(&mut self, e: &SExpr, exprs: &[&SExpr]) -> Abs {
        for d in temperature::lint_scaling(e) {
            self.report(d);
        }
        self.statement_expr_unlinted(e, exprs)
    }

    pub(crate) fn statement_expr_unlinted(&mut self, e: &SExpr, exprs: &[&SExpr]) -> Abs {
        if !temperature::mentions(e, TEMPERATURE) || self.lookup(TEMPERATURE).is_some() {
            return self.expr(e);
        }
        match temperature::binding(exprs) {
            Binding::Unbound => self.expr(e),
            Binding::Conflict(a, b) => {
                self.report(
                    Diagnostic::error("`T` is ambiguous: this statement sets two different temperatures")
                        .label(a.span, "one temperature here")
                        .label(b.span, "another here")
                        .help("write the factor you mean as a number (kl(T=2)*4), or split the terms into separate statements"),
                );
                self.with_scope(|c| {
                    c.bind_local(TEMPERATURE, Abs::of(Kinds::SCALAR), a.span);
                    c.expr(e)
                })
            }
            Binding::One(t) => {
                let t_abs = self.expr(t);
                self.with_scope(|c| {
                    c.bind_local(TEMPERATURE, t_abs, t.span);
                    c.expr(e)
                })
            }
        }
    }

    fn with_scope<R>(&mut self, f: impl FnOnce(&mut Checker) -> R) -> R {
        self.state.scopes.push(BTreeMap::new());
        let r = f(self);
        self.state.scopes.pop();
        r
    }

    fn bind_local(&mut self, name: &str, abs: Abs, span: Span) {
        self.state.scopes.last_mut().expect("a scope").insert(name.to_string(), Bound { abs, span });
    }

    /// `let` (fresh) or `x = ..` (assign): a second `let` of a name is an error in a file.
    fn define(&mut self, name: &Ident, abs: Abs, fresh: bool) {
        let is_def = abs.func.is_some();
        let existing = self.state.scopes.last().and_then(|s| s.get(&name.node)).map(|b| b.span);
        if let (true, Some(first), false) = (fresh, existing, self.allow_redefinition) {
            self.report(
                Diagnostic::error(format!("`{}` is already defined", name.node))
                    .label(name.span, "defined again here")
                    .label(first, "first defined here")
                    .help(if is_def {
                        "give one of them another name".to_string()
                    } else {
                        format!("drop `let` to give it a new value: `{} = ...`", name.node)
                    }),
            );
        }
        if existing.is_none() && (crate::builtins::lookup(&name.node).is_some() || crate::builtins::constants().iter().any(|(n, _, _)| *n == name.node)) {
            self.report(
                Diagnostic::warning(format!("`{}` hides the builtin of the same name", name.node))
                    .label(name.span, "defined here")
                    .help("pick another name unless you mean to replace the builtin in this script"),
            );
        }
        if Role::from_name(&name.node).is_some() {
            self.report(
                Diagnostic::warning(format!("`{0}` is a role slot; this makes a variable that hides it", name.node))
                    .label(name.span, "a variable, not the slot")
                    .help(format!("to set the slot, write `{0} <value>` without `let`", name.node)),
            );
        }
        // Like the evaluator: an assignment updates the scope that holds the name.
        let holder = if fresh { None } else { self.state.scopes.iter().rposition(|sc| sc.contains_key(&name.node)) };
        let index = holder.unwrap_or(self.state.scopes.len() - 1);
        self.state.scopes[index].insert(name.node.clone(), Bound { abs, span: name.span });
    }

    fn def(&mut self, name: &Ident, params: &[crate::syntax::Param], body: &SExpr) {
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        for p in params {
            if let Some(first) = seen.insert(&p.name.node, p.name.span) {
                self.report(
                    Diagnostic::error(format!("parameter `{}` appears twice", p.name.node))
                        .label(p.name.span, "again here")
                        .label(first, "first here"),
                );
            }
        }
        let defaults: Vec<Abs> = params.iter().map(|p| p.default.as_ref().map(|d| self.expr(d)).unwrap_or_else(Abs::any)).collect();
        let shape: Vec<(String, bool)> = params.iter().map(|p| (p.name.node.clone(), p.default.is_none())).collect();
        // The def may call itself: its name is visible in its body.
        let provisional = FuncSig { name: name.node.clone(), params: shape.clone(), returns: Abs::any(), body: None };
        // The body is checked once with parameters of unknown value: kinds only.
        self.def_bodies += 1;
        let returns = self.with_scope(|c| {
            c.bind_local(&name.node, Abs { func: Some(Rc::new(provisional)), ..Abs::of(Kinds::FUNCTION) }, name.span);
            for (p, d) in params.iter().zip(defaults) {
                let kinds = if d.kinds.is_single() && d.kinds != Kinds::NUMBER { d.kinds } else { Kinds::ANY };
                c.bind_local(&p.name.node, Abs::of(kinds), p.name.span);
            }
            c.statement_expr(body, &[body])
        });
        self.def_bodies -= 1;
        let sig = FuncSig {
            name: name.node.clone(),
            params: shape,
            returns: returns.unknown_value(),
            body: Some(Rc::new(body.clone())),
        };
        let abs = Abs { func: Some(Rc::new(sig)), ..Abs::of(Kinds::FUNCTION) };
        self.define(name, abs, true);
    }

    /// A call of a def: its body again, with the slots as they are here. Only slot
    /// problems count (everything else was reported at the def), each also labelled at
    /// this call.
    pub(crate) fn recheck_at_call(&mut self, sig: &FuncSig, call: Span) {
        let Some(body) = sig.body.clone() else { return };
        if self.def_bodies > 0 || self.rechecking.contains(&sig.name) {
            return;
        }
        self.rechecking.push(sig.name.clone());
        let mark = self.diags.len();
        let outer = self.call_site.replace(Vec::new());
        self.with_scope(|c| {
            for (p, _) in &sig.params {
                c.bind_local(p, Abs::any(), body.span);
            }
            c.statement_expr_unlinted(&body, &[&body]);
        });
        self.diags.truncate(mark);
        let found = std::mem::replace(&mut self.call_site, outer).unwrap_or_default();
        self.rechecking.pop();
        for d in found {
            self.slot_problem(d.label(call, format!("`{}` is called here", sig.name)));
        }
    }

    fn use_(&mut self, target: &UseTarget) {
        let loaded = match target {
            UseTarget::Module(m) => match self.loader.borrow_mut().load_stdlib(&m.node) {
                Some(l) => Some((m.node.clone(), l)),
                None => {
                    let names = crate::loader::stdlib_names();
                    let mut d = Diagnostic::error(format!("there is no stdlib module `{}`", m.node)).label(m.span, "unknown module");
                    d = match crate::suggest::closest(&m.node, names.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`? stdlib modules: {}", names.join(", "))),
                        None => d.help(format!("stdlib modules: {}; to use a file, quote its path: use \"file.kd\"", names.join(", "))),
                    };
                    self.diags.push(d);
                    None
                }
            },
            UseTarget::File(p) => {
                let r = self.loader.borrow_mut().load_relative(self.file, &p.node, p.span);
                match r {
                    Ok(l) => {
                        let stem = std::path::Path::new(&p.node).file_stem().and_then(|s| s.to_str()).unwrap_or("module").to_string();
                        Some((stem, l))
                    }
                    Err(d) => {
                        self.diags.push(d);
                        None
                    }
                }
            }
        };
        let Some((name, loaded)) = loaded else { return };
        let members = match self.state.modules.get(&name) {
            Some(m) => m.clone(),
            None => {
                self.diags.extend(loaded.diags.iter().cloned());
                // A used file is checked in a scope of its own; its names are then imported.
                let outer = std::mem::replace(&mut self.state.scopes, vec![BTreeMap::new()]);
                let outer_file = std::mem::replace(&mut self.file, loaded.file);
                let redefine = std::mem::replace(&mut self.allow_redefinition, false);
                self.scratch.file = loaded.file;
                for s in &loaded.module.stmts {
                    self.stmt(s);
                }
                self.allow_redefinition = redefine;
                self.file = outer_file;
                self.scratch.file = outer_file;
                let own = std::mem::replace(&mut self.state.scopes, outer).pop().unwrap_or_default();
                let members: Rc<BTreeMap<String, Abs>> = Rc::new(own.into_iter().map(|(k, b)| (k, b.abs)).collect());
                self.state.modules.insert(name.clone(), members.clone());
                members
            }
        };
        let span = match target {
            UseTarget::Module(m) => m.span,
            UseTarget::File(p) => p.span,
        };
        let scope = self.state.scopes.last_mut().expect("a scope");
        for (k, a) in members.iter() {
            scope.insert(k.clone(), Bound { abs: a.clone(), span });
        }
        let module = Abs { members: Some(members), ..Abs::of(Kinds::MODULE) };
        scope.insert(name, Bound { abs: module, span });
    }

    fn set_slot(&mut self, role: Role, a: Abs, span: Span) {
        let want = role_accepts(role);
        if !a.kinds.fits(want) {
            let mut d = Diagnostic::error(format!("`{}` needs {}, but this is {}", role.name(), with_article(want), with_article(a.kinds)))
                .label(span, format!("this is {}", with_article(a.kinds)));
            if a.kinds == Kinds::FUNCTION {
                d = d.help("call the function to get a value, e.g. llama(layers=8, dim=512) or kl(T=2)");
            } else if matches!(role, Role::Teacher | Role::Student) {
                d = d.help("build a model with llama(...), or pick a preset after `use arch`");
            }
            self.report(d);
            return;
        }
        let a = match (role, &a.value) {
            (Role::Data | Role::Tokenizer, Some(Value::Str(_))) => Abs::of(if role == Role::Data { Kinds::DATA } else { Kinds::TOKENIZER }),
            (Role::Student, Some(Value::Model(m))) if m.vocab.is_none() => match self.known_vocab() {
                Some(v) => Abs::known(Value::Model(Rc::new(m.with_vocab(v, None)))),
                None => a,
            },
            _ => a,
        };
        self.state.slots.insert(role, a);
    }

    /// The teacher's vocabulary, which a student without `vocab=` inherits — unless a
    /// tokenizer slot is set: that wins (lang/roles.md), and is only read at run time.
    fn known_vocab(&self) -> Option<usize> {
        if self.state.slots.contains_key(&Role::Tokenizer) {
            return None;
        }
        match self.state.slots.get(&Role::Teacher).and_then(|a| a.value.clone()) {
            Some(Value::Model(m)) => m.vocab,
            _ => None,
        }
    }

    fn stage(&mut self, name: &Ident, body: &[SStmt]) {
        let outer_slots = self.state.slots.clone();
        let previous = self.state.stages.last().cloned();
        self.with_scope(|c| {
            if let Some(p) = previous {
                c.bind_local("previous", p, name.span);
            }
            for s in body {
                c.stmt(s);
            }
        });
        let stage_slots = std::mem::replace(&mut self.state.slots, outer_slots);
        let mut members: BTreeMap<String, Abs> = stage_slots.into_iter().map(|(r, a)| (r.name().to_string(), a)).collect();
        // Its row of the stage table; read at run time (a stage that trained nothing
        // says so there).
        for figure in crate::eval::StageFigures::MEMBERS {
            members.entry(figure.to_string()).or_insert_with(|| Abs::of(Kinds::NUMBER));
        }
        members.entry("name".to_string()).or_insert_with(|| Abs::known(Value::str(&name.node)));
        let abs = Abs { members: Some(Rc::new(members)), ..Abs::of(Kinds::STAGE) };
        self.state.stages.push(abs.clone());
        self.define(name, abs, true);
    }
}
