//! The syntax tree. Every node carries its span so later stages can point at it.

use crate::diag::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

pub type Ident = Spanned<String>;
pub type SExpr = Spanned<Expr>;
pub type SStmt = Spanned<Stmt>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `a >> b`: run schedule `a`, then `b`.
    Chain,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Chain => ">>",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: SExpr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Str(String),
    Bool(bool),
    Name(String),
    List(Vec<SExpr>),
    Call { callee: Box<SExpr>, args: Vec<Arg> },
    Member { object: Box<SExpr>, name: Ident },
    Index { object: Box<SExpr>, index: Box<SExpr> },
    Neg(Box<SExpr>),
    Binary { op: BinOp, lhs: Box<SExpr>, rhs: Box<SExpr> },
    /// Placeholder left by error recovery; never evaluated.
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub default: Option<SExpr>,
}

/// The role slots a script fills: `teacher e`, `student e`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Teacher,
    Student,
    Tokenizer,
    Data,
    Loss,
    Optim,
    Schedule,
}

impl Role {
    pub const ALL: [Role; 7] =
        [Role::Teacher, Role::Student, Role::Tokenizer, Role::Data, Role::Loss, Role::Optim, Role::Schedule];

    pub fn name(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Student => "student",
            Role::Tokenizer => "tokenizer",
            Role::Data => "data",
            Role::Loss => "loss",
            Role::Optim => "optim",
            Role::Schedule => "schedule",
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UseTarget {
    /// `use losses`: a stdlib module.
    Module(Ident),
    /// `use "path.kd"`: a file relative to the script.
    File(Spanned<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Let { name: Ident, value: SExpr },
    Assign { name: Ident, value: SExpr },
    Def { name: Ident, params: Vec<Param>, body: SExpr },
    Use(UseTarget),
    Role { role: Spanned<Role>, value: SExpr },
    Save { value: SExpr, path: SExpr },
    Print(Vec<SExpr>),
    Stage { name: Ident, body: Vec<SStmt> },
    /// `require retention >= 85%`: a gate that stops a stage chain when false.
    Require(SExpr),
    Expr(SExpr),
    /// Placeholder left by error recovery.
    Error,
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Module {
    pub stmts: Vec<SStmt>,
}
