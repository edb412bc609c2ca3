//! Tokens produced by the lexer and consumed by the parser.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Num(f64),
    Str(String),
    Ident(String),
    Kw(Keyword),
    Op(&'static str),
    Ctrl(char),
    /// A statement separator: a newline or `;` (after layout, runs collapse to one).
    Sep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Let,
    Def,
    Use,
    Save,
    To,
    Print,
    Stage,
    Require,
    True,
    False,
}

impl Keyword {
    pub const ALL: [Keyword; 10] = [
        Keyword::Let,
        Keyword::Def,
        Keyword::Use,
        Keyword::Save,
        Keyword::To,
        Keyword::Print,
        Keyword::Stage,
        Keyword::Require,
        Keyword::True,
        Keyword::False,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Let => "let",
            Keyword::Def => "def",
            Keyword::Use => "use",
            Keyword::Save => "save",
            Keyword::To => "to",
            Keyword::Print => "print",
            Keyword::Stage => "stage",
            Keyword::Require => "require",
            Keyword::True => "true",
            Keyword::False => "false",
        }
    }

    pub fn from_str(s: &str) -> Option<Keyword> {
        Keyword::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Token::Num(n) => write!(f, "{n}"),
            Token::Str(s) => write!(f, "{s:?}"),
            Token::Ident(s) => write!(f, "{s}"),
            Token::Kw(k) => write!(f, "{}", k.as_str()),
            Token::Op(s) => write!(f, "{s}"),
            Token::Ctrl(c) => write!(f, "{c}"),
            Token::Sep => write!(f, "end of statement"),
        }
    }
}
