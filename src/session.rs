//! The host API: a `Session` checks and runs kdl source and keeps its bindings and role
//! slots between calls, so a Rust program (or the REPL) can embed the language.
//!
//! ```
//! use kdl::Session;
//!
//! let mut s = Session::capture();
//! s.eval_str("use losses\nstudent llama(layers=8, dim=512, vocab=32000)").unwrap();
//! s.eval_str("loss hinton(alpha=0.5, T=2)").unwrap();
//! let params = s.eval_str("student.params / 1e6").unwrap().unwrap();
//! assert_eq!(params.short(), "42.082816");
//! assert!(s.get("hinton").is_some());
//! assert!(s.eval_str("print studnet").is_err()); // did you mean `student`?
//! ```

use crate::check::{Abs, Checker};
use crate::diag::{has_errors, render_all, Diagnostic};
use crate::eval::{Interp, Out, Value};
use crate::loader::{Loaded, Loader};
use crate::syntax::Role;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

/// Source that passed every check and is ready to run.
pub struct Prepared(Loaded);

/// Why a call failed: script diagnostics, or a file that could not be read.
#[derive(Debug, Clone)]
pub struct Error {
    pub diagnostics: Vec<Diagnostic>,
    /// True for usage and IO problems (exit code 2), false for script errors (1).
    pub io: bool,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.diagnostics.iter().find(|d| d.is_error()) {
            Some(d) => write!(f, "{}", d.message),
            None => write!(f, "failed"),
        }
    }
}

impl std::error::Error for Error {}

pub struct Session {
    loader: Rc<RefCell<Loader>>,
    checker: Checker,
    interp: Interp,
    warnings: Vec<Diagnostic>,
    captured: Option<Rc<RefCell<Vec<u8>>>>,
}

struct SharedBuf(Rc<RefCell<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session whose `print` output goes to stdout.
    pub fn new() -> Self {
        Self::with_output(Rc::new(RefCell::new(std::io::stdout())))
    }

    /// A session that keeps its output; read it with `take_output`.
    pub fn capture() -> Self {
        let buf = Rc::new(RefCell::new(Vec::new()));
        let mut s = Self::with_output(Rc::new(RefCell::new(SharedBuf(buf.clone()))));
        s.captured = Some(buf);
        s
    }

    pub fn with_output(out: Out) -> Self {
        let loader = Rc::new(RefCell::new(Loader::default()));
        Session {
            checker: Checker::new(loader.clone()),
            interp: Interp::new(loader.clone(), out),
            loader,
            warnings: Vec::new(),
            captured: None,
        }
    }

    /// Lets later input redefine names (the REPL); files keep the duplicate check.
    pub fn set_interactive(&mut self, on: bool) {
        self.checker.allow_redefinition = on;
    }

    /// Checks and runs source text. Returns the value of a final expression statement.
    pub fn eval_str(&mut self, src: &str) -> Result<Option<Value>, Error> {
        let loaded = self.loader.borrow_mut().add_text("<input>", src);
        self.run_loaded(loaded)
    }

    /// Like `eval_str`, naming the text for diagnostics (e.g. `<repl:3>`).
    pub fn eval_named(&mut self, name: &str, src: &str) -> Result<Option<Value>, Error> {
        let loaded = self.loader.borrow_mut().add_text(name, src);
        self.run_loaded(loaded)
    }

    pub fn eval_file(&mut self, path: &Path) -> Result<(), Error> {
        let loaded = self.load(path)?;
        self.run_loaded(loaded).map(|_| ())
    }

    /// Every static check of a file, running nothing. Ok holds the warnings.
    pub fn check_file(&mut self, path: &Path) -> Result<Vec<Diagnostic>, Error> {
        let loaded = self.load(path)?;
        self.check_loaded(&loaded)?;
        Ok(self.take_warnings())
    }

    fn load(&mut self, path: &Path) -> Result<Loaded, Error> {
        self.loader.borrow_mut().load_file(path).map_err(|d| Error { diagnostics: vec![d], io: true })
    }

    fn check_loaded(&mut self, loaded: &Loaded) -> Result<(), Error> {
        let saved = self.checker.state.clone();
        let mut diags = loaded.diags.clone();
        diags.extend(self.checker.check_module(&loaded.module, loaded.file));
        if has_errors(&diags) {
            // A rejected entry leaves no trace (the REPL tries again).
            self.checker.state = saved;
            return Err(Error { diagnostics: diags, io: false });
        }
        self.warnings.extend(diags);
        Ok(())
    }

    /// Loads and checks a file without running it; pass the result to `execute`.
    /// Warnings are ready in `take_warnings` before anything runs.
    pub fn prepare_file(&mut self, path: &Path) -> Result<Prepared, Error> {
        let loaded = self.load(path)?;
        self.check_loaded(&loaded)?;
        Ok(Prepared(loaded))
    }

    /// Like `prepare_file`, for text named `name` in diagnostics.
    pub fn prepare_str(&mut self, name: &str, src: &str) -> Result<Prepared, Error> {
        let loaded = self.loader.borrow_mut().add_text(name, src);
        self.check_loaded(&loaded)?;
        Ok(Prepared(loaded))
    }

    /// Runs checked source; returns the value of a final expression statement.
    pub fn execute(&mut self, prepared: Prepared) -> Result<Option<Value>, Error> {
        self.exec_loaded(&prepared.0)
    }

    fn run_loaded(&mut self, loaded: Loaded) -> Result<Option<Value>, Error> {
        self.check_loaded(&loaded)?;
        self.exec_loaded(&loaded)
    }

    fn exec_loaded(&mut self, loaded: &Loaded) -> Result<Option<Value>, Error> {
        let mut last = None;
        self.interp.file = loaded.file;
        for stmt in &loaded.module.stmts {
            self.interp.streamed = false;
            match self.interp.exec_stmt(stmt) {
                Ok(v) => last = v,
                Err(_) if self.interp.dry_stop.is_some() => {
                    let stop = self.interp.dry_stop.take().unwrap_or_default();
                    self.interp.say(&stop);
                    return Ok(None);
                }
                Err(d) => return Err(Error { diagnostics: vec![d], io: false }),
            }
        }
        // A script (or REPL entry) that ran stages ends with their table.
        if loaded.module.stmts.iter().any(|s| matches!(s.node, crate::syntax::Stmt::Stage { .. })) {
            if let Some(table) = self.interp.stage_table() {
                self.interp.say(&table);
            }
        }
        Ok(last)
    }

    /// `kdl run --dry-run`: load and plan, stop before the first action that trains,
    /// scores data with a model or writes (`builtins::DRY_RUN_STOPS_AT`, `save`).
    pub fn set_dry_run(&mut self, on: bool) {
        self.interp.dry_run = on;
    }

    /// Lets builtins colour their output (`probe`); off by default and for captured output.
    pub fn set_color(&mut self, on: bool) {
        self.interp.color = on;
    }

    /// True when the last statement's value was already streamed to the output
    /// (`generate`, `chat`), so a REPL should not print it again.
    pub fn streamed(&self) -> bool {
        self.interp.streamed
    }

    /// Warnings from checks since the last call.
    pub fn take_warnings(&mut self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.warnings)
    }

    /// Output captured by a `Session::capture()` session since the last call.
    pub fn take_output(&mut self) -> String {
        match &self.captured {
            Some(buf) => String::from_utf8_lossy(&std::mem::take(&mut *buf.borrow_mut())).into_owned(),
            None => String::new(),
        }
    }

    /// A bound name's value.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.interp.scope.borrow().get(name)
    }

    /// A role slot's value (`teacher`, `student`, ...).
    pub fn slot(&self, role: Role) -> Option<Value> {
        self.interp.slot(role)
    }

    /// Names visible at the top level (builtins included), for completion.
    pub fn names(&self) -> Vec<String> {
        self.interp.scope.borrow().all_names()
    }

    /// What the checker knows of an expression: `:type`.
    pub fn type_of(&mut self, src: &str) -> Result<Abs, Error> {
        let file = self.loader.borrow_mut().sources.add("<type>", src);
        let (e, mut diags) = crate::syntax::parse_expr(src, file);
        let Some(e) = e else { return Err(Error { diagnostics: diags, io: false }) };
        let saved = self.checker.state.clone();
        let (abs, more) = self.checker.type_of(&e, file);
        self.checker.state = saved;
        diags.extend(more);
        if has_errors(&diags) {
            return Err(Error { diagnostics: diags, io: false });
        }
        Ok(abs)
    }

    /// Renders diagnostics as ariadne reports against this session's sources.
    pub fn render(&self, diags: &[Diagnostic], color: bool) -> String {
        render_all(diags, &self.loader.borrow().sources, color)
    }
}
