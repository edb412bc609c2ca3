//! Stage 2, check: every static check, without making a tensor — names (with
//! did-you-mean), arguments, kinds, ranges, required role slots, duplicate definitions and
//! the temperature rules. It reports all problems of a file. Pure builtins are run on
//! constant arguments (through the evaluator) so their validation is reported here too.

mod abs;
mod exprs;
mod stmts;
pub mod temperature;

pub use abs::{Abs, FuncSig};

use crate::diag::{Diagnostic, FileId, Span};
use crate::eval::Interp;
use crate::loader::Loader;
use crate::syntax::{Module, Role};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Clone)]
pub(crate) struct Bound {
    pub abs: Abs,
    pub span: Span,
}

/// What the checker knows between statements; cloned by the REPL to undo a failed line.
#[derive(Clone, Default)]
pub struct CheckState {
    scopes: Vec<BTreeMap<String, Bound>>,
    slots: BTreeMap<Role, Abs>,
    stages: Vec<Abs>,
    modules: BTreeMap<String, Rc<BTreeMap<String, Abs>>>,
}

pub struct Checker {
    pub state: CheckState,
    loader: Rc<RefCell<Loader>>,
    /// Runs pure builtins on constants; its output goes nowhere.
    scratch: Interp,
    diags: Vec<Diagnostic>,
    file: FileId,
    /// The REPL may redefine names; files may not.
    pub allow_redefinition: bool,
    /// Above 0 while a def's body is checked where it is defined: slot problems wait for
    /// the call site, where the slots are known.
    def_bodies: usize,
    /// While a def's body is checked again at a call: the slot problems found, and the
    /// defs being re-checked (so a recursive def is re-checked once).
    call_site: Option<Vec<Diagnostic>>,
    rechecking: Vec<String>,
}

impl Checker {
    pub fn new(loader: Rc<RefCell<Loader>>) -> Self {
        let sink: crate::eval::Out = Rc::new(RefCell::new(std::io::sink()));
        let scratch = Interp::new(loader.clone(), sink);
        Checker {
            state: CheckState { scopes: vec![BTreeMap::new()], ..Default::default() },
            loader,
            scratch,
            diags: Vec::new(),
            file: FileId(0),
            allow_redefinition: false,
            def_bodies: 0,
            call_site: None,
            rechecking: Vec::new(),
        }
    }

    /// Checks a module, returning every error and warning found.
    pub fn check_module(&mut self, module: &Module, file: FileId) -> Vec<Diagnostic> {
        let saved = std::mem::replace(&mut self.file, file);
        self.scratch.file = file;
        for stmt in &module.stmts {
            self.stmt(stmt);
        }
        self.file = saved;
        std::mem::take(&mut self.diags)
    }

    /// The abstract value of one expression (the REPL's `:type`).
    pub fn type_of(&mut self, e: &crate::syntax::SExpr, file: FileId) -> (Abs, Vec<Diagnostic>) {
        self.file = file;
        let a = self.statement_expr_unlinted(e, &[e]);
        (a, std::mem::take(&mut self.diags))
    }

    /// Names bound at the top level (for completion).
    pub fn names(&self) -> Vec<String> {
        self.state.scopes.iter().flat_map(|s| s.keys().cloned()).collect()
    }

    fn report(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// A problem that depends on the role slots: reported now at the top level, kept for
    /// the call site inside a def body.
    fn slot_problem(&mut self, d: Diagnostic) {
        if let Some(found) = &mut self.call_site {
            found.push(d);
        } else if self.def_bodies == 0 {
            self.diags.push(d);
        }
    }
}
