//! Running statements: bindings, role slots, stages, `use`, `save` and `print`. Expression
//! evaluation is in `expr.rs`. Runtime errors are diagnostics pointing at the statement
//! or argument that caused them.

use super::env::Scope;
use super::value::{ModuleValue, StageValue, Value, VocabSource};
use crate::check::temperature::{self, Binding, TEMPERATURE};
use crate::diag::{Diagnostic, FileId, Span};
use crate::kind::{role_accepts, with_article};
use crate::loader::{base_dir, Loader};
use crate::syntax::{Module, Role, SExpr, SStmt, Stmt, UseTarget};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

pub type Out = Rc<RefCell<dyn Write>>;

pub struct Interp {
    pub loader: Rc<RefCell<Loader>>,
    pub scope: Rc<RefCell<Scope>>,
    pub slots: BTreeMap<Role, Value>,
    pub out: Out,
    /// File of the statement being run: relative paths resolve against its folder.
    pub file: FileId,
    /// Finished stages, in order; `previous` is the last.
    pub stages: Vec<Rc<StageValue>>,
    pub(super) depth: usize,
    /// Set when the last builtin already streamed its result (generate, chat), so a
    /// REPL does not print it twice.
    pub streamed: bool,
    /// Whether output may carry ANSI colours (a terminal that wants them).
    pub color: bool,
    modules: BTreeMap<String, Rc<ModuleValue>>,
    /// The last `train(...)`'s figures, for `require` and the stage table.
    pub last_train: Option<super::chain::TrainRecord>,
    pub stage_rows: Vec<super::chain::StageRow>,
    pub chain: super::chain::Chain,
    /// `kdl run --dry-run`: stop before the first action that trains, scores or writes.
    pub dry_run: bool,
    /// Where a dry run stopped, once it has: the session ends the run there, successfully.
    pub dry_stop: Option<String>,
}

/// A scope with every builtin and constant: the parent of each module's scope.
pub fn global_scope() -> Rc<RefCell<Scope>> {
    let mut g = Scope::default();
    for b in crate::builtins::all() {
        g.define(b.name, Value::Builtin(b));
    }
    for (name, v, _) in crate::builtins::constants() {
        g.define(name, v);
    }
    Rc::new(RefCell::new(g))
}

impl Interp {
    pub fn new(loader: Rc<RefCell<Loader>>, out: Out) -> Self {
        let scope = Scope::child(&global_scope());
        Interp { loader, scope, slots: BTreeMap::new(), out, file: FileId(0), stages: Vec::new(), depth: 0, streamed: false, color: false, modules: BTreeMap::new(), last_train: None, stage_rows: Vec::new(), chain: Default::default(), dry_run: false, dry_stop: None }
    }

    /// Writes a line of program output.
    pub fn say(&self, text: &str) {
        let mut out = self.out.borrow_mut();
        // Output that cannot be written (a closed pipe) is not the script's fault.
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            return p;
        }
        base_dir(self.loader.borrow().sources.name(self.file)).join(p)
    }

    /// Ends a dry run before the action at `span`: the error unwinds the script and the
    /// session, seeing `dry_stop`, reports the stop and succeeds.
    pub fn stop_dry_run(&mut self, what: &str, span: Span) -> Diagnostic {
        let (line, file) = {
            let loader = self.loader.borrow();
            let name = loader.sources.name(span.context).to_string();
            (loader.sources.line_of(span), name)
        };
        let file = std::path::Path::new(&file).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(file);
        let msg = format!("dry run: stopped before {what} at {file}:{line}; nothing was trained, scored or written");
        self.dry_stop = Some(msg.clone());
        Diagnostic::error(msg).label(span, "the dry run stops here")
    }

    pub fn slot(&self, role: Role) -> Option<Value> {
        self.slots.get(&role).cloned()
    }

    pub fn exec_module(&mut self, module: &Module, file: FileId) -> Result<(), Diagnostic> {
        let saved = std::mem::replace(&mut self.file, file);
        let result = module.stmts.iter().try_for_each(|s| self.exec_stmt(s).map(|_| ()));
        self.file = saved;
        result
    }

    /// Runs one statement; an expression statement returns its value (the REPL shows it).
    pub fn exec_stmt(&mut self, stmt: &SStmt) -> Result<Option<Value>, Diagnostic> {
        match &stmt.node {
            Stmt::Let { name, value } => {
                let v = self.eval_in_statement(value, &[value])?;
                self.scope.borrow_mut().define(&name.node, v);
            }
            Stmt::Assign { name, value } => {
                let v = self.eval_in_statement(value, &[value])?;
                self.scope.borrow_mut().assign(&name.node, v);
            }
            Stmt::Def { name, params, body } => {
                let closure = super::value::Closure {
                    name: name.node.clone(),
                    params: params.clone(),
                    body: body.clone(),
                    scope: self.scope.clone(),
                };
                self.scope.borrow_mut().define(&name.node, Value::Func(Rc::new(closure)));
            }
            Stmt::Use(target) => self.exec_use(target)?,
            Stmt::Role { role, value } => {
                let v = self.eval_in_statement(value, &[value])?;
                self.set_slot(role.node, v, value.span)?;
            }
            Stmt::Save { value, path } => {
                if self.dry_run {
                    return Err(self.stop_dry_run("`save`", stmt.span));
                }
                let v = self.eval_in_statement(value, &[value, path])?;
                let p = self.eval(path)?;
                super::save::save(self, &v, &p, value.span, path.span)?;
            }
            Stmt::Print(exprs) => {
                let refs: Vec<&SExpr> = exprs.iter().collect();
                let mut parts = Vec::new();
                for e in exprs {
                    parts.push(self.eval_in_statement(e, &refs)?.display());
                }
                self.say(&parts.join(" "));
            }
            Stmt::Stage { name, body } => self.exec_stage(&name.node, body)?,
            Stmt::Require(cond) => self.exec_require(cond, stmt.span)?,
            Stmt::Expr(e) => return Ok(Some(self.eval_in_statement(e, &[e])?)),
            Stmt::Error => return Err(Diagnostic::error("this statement did not parse").label(stmt.span, "here")),
        }
        Ok(None)
    }

    /// Evaluates `e`, with a bare `T` meaning the temperature set by a `kl(T=..)` in the
    /// same statement (`exprs`), when `T` is not a name of its own.
    pub fn eval_in_statement(&mut self, e: &SExpr, exprs: &[&SExpr]) -> Result<Value, Diagnostic> {
        if !temperature::mentions(e, TEMPERATURE) || self.scope.borrow().get(TEMPERATURE).is_some() {
            return self.eval(e);
        }
        let Binding::One(t) = temperature::binding(exprs) else { return self.eval(e) };
        let t = self.eval(t)?;
        let inner = Scope::child(&self.scope);
        inner.borrow_mut().define(TEMPERATURE, t);
        let outer = std::mem::replace(&mut self.scope, inner);
        let result = self.eval(e);
        self.scope = outer;
        result
    }

    pub fn set_slot(&mut self, role: Role, value: Value, span: Span) -> Result<(), Diagnostic> {
        let value = self.coerce_for_slot(role, value, span)?;
        let value = match (role, &value) {
            (Role::Student, Value::Model(m)) if m.vocab.is_none() => match self.vocab_source() {
                Some(src) => Value::Model(Rc::new(m.with_vocab_from(&src))),
                None => value,
            },
            // A teacher built with llama(...) reads the tokenizer slot's vocabulary too.
            (Role::Teacher, Value::Model(m)) if m.vocab.is_none() => match self.slot(Role::Tokenizer) {
                Some(Value::Tokenizer(t)) => Value::Model(Rc::new(m.with_vocab(t.vocab(), Some(t.clone())))),
                _ => value,
            },
            _ => value,
        };
        self.slots.insert(role, value);
        Ok(())
    }

    /// Where a model without `vocab=` takes its vocabulary and its tokenizer from — both
    /// from one place, by one rule (lang/roles.md#vocabulary): the tokenizer slot when it
    /// is set, else the teacher. Taking the size from one and the tokenizer from the
    /// other once fed one tokenizer's ids to a teacher trained on another's.
    pub fn vocab_source(&self) -> Option<VocabSource> {
        if let Some(Value::Tokenizer(t)) = self.slot(Role::Tokenizer) {
            return Some(VocabSource { vocab: t.vocab(), tokenizer: Some(t), from: Role::Tokenizer });
        }
        match self.slot(Role::Teacher) {
            Some(Value::Model(m)) => m.vocab.map(|vocab| VocabSource { vocab, tokenizer: m.tokenizer.clone(), from: Role::Teacher }),
            _ => None,
        }
    }

    /// The tokenizer that reads text for a model that has none: the vocabulary source's.
    pub fn known_tokenizer(&self) -> Option<Rc<super::value::TokenizerValue>> {
        self.vocab_source().and_then(|s| s.tokenizer)
    }

    fn coerce_for_slot(&mut self, role: Role, value: Value, span: Span) -> Result<Value, Diagnostic> {
        let want = role_accepts(role);
        if !value.kind().fits(want) {
            return Err(Diagnostic::error(format!("`{}` needs {}, but this is {}", role.name(), with_article(want), with_article(value.kind())))
                .label(span, format!("this is {}", with_article(value.kind()))));
        }
        // A path is shorthand for the builtin that reads it.
        let reader = match (role, &value) {
            (Role::Data, Value::Str(_)) => "text",
            (Role::Tokenizer, Value::Str(_)) => "tokenizer",
            _ => return Ok(value),
        };
        let b = crate::builtins::lookup(reader).expect("reader builtins exist");
        self.call_builtin(b, vec![(None, span, value)], span)
    }

    fn exec_use(&mut self, target: &UseTarget) -> Result<(), Diagnostic> {
        let (name, loaded) = match target {
            UseTarget::Module(m) => {
                let loaded = self.loader.borrow_mut().load_stdlib(&m.node).ok_or_else(|| {
                    Diagnostic::error(format!("there is no stdlib module `{}`", m.node)).label(m.span, "unknown module")
                })?;
                (m.node.clone(), loaded)
            }
            UseTarget::File(p) => {
                let loaded = self.loader.borrow_mut().load_relative(self.file, &p.node, p.span)?;
                let stem = std::path::Path::new(&p.node).file_stem().and_then(|s| s.to_str()).unwrap_or("module").to_string();
                (stem, loaded)
            }
        };
        if let Some(d) = loaded.diags.iter().find(|d| d.is_error()) {
            return Err(d.clone());
        }
        let module = match self.modules.get(&name) {
            Some(m) => m.clone(),
            None => {
                // A used file runs in a scope of its own; its names are then imported.
                let inner = Scope::child(&global_scope());
                let outer = std::mem::replace(&mut self.scope, inner);
                let result = self.exec_module(&loaded.module, loaded.file);
                let own = std::mem::replace(&mut self.scope, outer);
                result?;
                let names = own.borrow().own_names().clone();
                let m = Rc::new(ModuleValue { name: name.clone(), names });
                self.modules.insert(name.clone(), m.clone());
                m
            }
        };
        let mut scope = self.scope.borrow_mut();
        for (k, v) in &module.names {
            scope.define(k, v.clone());
        }
        scope.define(&name, Value::Module(module));
        Ok(())
    }

    fn exec_stage(&mut self, name: &str, body: &[SStmt]) -> Result<(), Diagnostic> {
        let outer_slots = self.slots.clone();
        let inner = Scope::child(&self.scope);
        self.last_train = None;
        if let Some(prev) = self.stages.last() {
            inner.borrow_mut().define("previous", Value::Stage(prev.clone()));
        }
        let outer = std::mem::replace(&mut self.scope, inner);
        let result = body.iter().try_for_each(|s| self.exec_stmt(s).map(|_| ()));
        self.scope = outer;
        let stage_slots = std::mem::replace(&mut self.slots, outer_slots);
        if result.is_err() {
            // A stopped chain still shows what its finished stages (and this one) reached.
            self.finish_stage_row(name);
            if let Some(table) = self.stage_table() {
                self.say(&table);
            }
        }
        result?;
        let slots = stage_slots.into_iter().map(|(r, v)| (r.name().to_string(), v)).collect();
        let figures = self.finish_stage_row(name);
        let stage = Rc::new(StageValue { name: name.to_string(), slots, figures });
        self.stages.push(stage.clone());
        self.scope.borrow_mut().define(name, Value::Stage(stage));
        Ok(())
    }
}
