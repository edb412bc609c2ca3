//! Line editing for the REPL (rustyline): completion of keywords, builtins, argument names
//! and bound names; syntax highlighting; and multi-line input while brackets are open.

use kdl::syntax::token::Keyword;
use kdl::syntax::Role;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

pub struct KdlHelper {
    /// Names bound in the session, refreshed after each entry.
    pub names: Rc<RefCell<Vec<String>>>,
    pub color: bool,
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The builtin whose argument list the cursor is in, if any: `adamw(l|` -> adamw.
fn enclosing_call(before: &str) -> Option<&str> {
    let mut depth = 0i32;
    for (i, c) in before.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth == 0 => {
                let head = &before[..i];
                let start = head.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map(|p| p + 1).unwrap_or(0);
                return Some(&head[start..]);
            }
            '(' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Argument names already given in the call the cursor is in: `kl(T=2, |` -> [T].
fn given_arguments(before: &str) -> Vec<String> {
    let open = before.rfind('(').map(|i| i + 1).unwrap_or(0);
    before[open..].split(',').filter_map(|part| part.split_once('=')).map(|(name, _)| name.trim().to_string()).collect()
}

/// What Tab offers at `pos`: where the replaced word starts, and the words. Right after
/// `kl(` or `, ` (no word yet) it lists the call's arguments not given yet; after a
/// word's first letters, everything that starts with them.
pub fn candidates(line: &str, pos: usize, names: &[String]) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let start = before.rfind(|c: char| !is_word(c)).map(|i| i + 1).unwrap_or(0);
    let word = &before[start..];
    let call = enclosing_call(before).and_then(kdl::builtins::lookup);
    let mut words: Vec<String> = Vec::new();
    if word.starts_with(':') {
        words.extend(super::help::COMMANDS.iter().map(|(c, _)| c.split(' ').next().unwrap_or(c).to_string()));
    } else if word.is_empty() {
        let given = given_arguments(before);
        if let Some(b) = call {
            words.extend(b.params.iter().filter(|p| !given.iter().any(|g| g == p.name)).map(|p| format!("{}=", p.name)));
        }
        return (start, words);
    } else {
        if let Some(b) = call {
            words.extend(b.params.iter().map(|p| format!("{}=", p.name)));
        }
        words.extend(Keyword::ALL.iter().map(|k| k.as_str().to_string()));
        words.extend(Role::ALL.iter().map(|r| r.name().to_string()));
        words.extend(kdl::builtins::all().iter().map(|b| b.name.to_string()));
        words.extend(kdl::builtins::constants().iter().map(|(n, _, _)| n.to_string()));
        words.extend(kdl::loader::stdlib_names().iter().map(|s| s.to_string()));
        words.extend(names.iter().cloned());
    }
    words.sort();
    words.dedup();
    words.retain(|w| w.starts_with(word));
    (start, words)
}

impl Completer for KdlHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = candidates(line, pos, &self.names.borrow());
        Ok((start, words.into_iter().map(|w| Pair { display: w.clone(), replacement: w }).collect()))
    }
}

const RESET: &str = "\x1b[0m";

fn paint(out: &mut String, color: &str, text: &str) {
    out.push_str(color);
    out.push_str(text);
    out.push_str(RESET);
}

/// Colours a line: keywords and roles, builtins, numbers, strings, comments.
pub fn highlight_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let end_of = |j: usize| chars.get(j).map(|(p, _)| *p).unwrap_or(line.len());
        if c == '#' {
            paint(&mut out, "\x1b[90m", &line[at..]);
            break;
        }
        if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j].1 != '"' {
                j += if chars[j].1 == '\\' { 2 } else { 1 };
            }
            let j = (j + 1).min(chars.len());
            paint(&mut out, "\x1b[32m", &line[at..end_of(j)]);
            i = j;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < chars.len() && (chars[j].1.is_ascii_alphanumeric() || matches!(chars[j].1, '.' | '_' | '%')) {
                j += 1;
            }
            paint(&mut out, "\x1b[36m", &line[at..end_of(j)]);
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].1.is_ascii_alphanumeric() || chars[j].1 == '_') {
                j += 1;
            }
            let word = &line[at..end_of(j)];
            if Keyword::from_str(word).is_some() || Role::from_name(word).is_some() {
                paint(&mut out, "\x1b[1;35m", word);
            } else if kdl::builtins::lookup(word).is_some() || word == "ce" {
                paint(&mut out, "\x1b[34m", word);
            } else {
                out.push_str(word);
            }
            i = j;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

impl Highlighter for KdlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.color && !line.starts_with(':') {
            Cow::Owned(highlight_line(line))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.color
    }
}

/// Open brackets, a trailing operator or comma: the entry goes on.
pub fn is_incomplete(text: &str) -> bool {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut escaped = false;
    let mut last_significant = ' ';
    for line in text.lines() {
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_str {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_str = false;
                }
                continue;
            }
            match c {
                '#' => break,
                '"' => in_str = true,
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
            if !c.is_whitespace() {
                last_significant = c;
            }
        }
        // A string cannot span lines: the lexer reports it.
        in_str = false;
    }
    depth > 0 || matches!(last_significant, '+' | '-' | '*' | '/' | '^' | '=' | ',' | '>' | '<' | '.')
}

impl Validator for KdlHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.starts_with(':') || !is_incomplete(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Hinter for KdlHelper {
    type Hint = String;
}

impl Helper for KdlHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_brackets_and_trailing_operators_continue() {
        assert!(is_incomplete("train(steps=10,"));
        assert!(is_incomplete("stage a {"));
        assert!(is_incomplete("loss 0.5*ce +"));
        assert!(!is_incomplete("loss 0.5*ce + 0.5*kl(T=2)*T^2"));
        assert!(!is_incomplete("print \"(\" # (("));
    }

    #[test]
    fn completion_context_finds_the_call() {
        assert_eq!(enclosing_call("x = adamw(lr=1, w"), Some("adamw"));
        assert_eq!(enclosing_call("llama(layers=f(2), d"), Some("llama"));
        assert_eq!(enclosing_call("print 1"), None);
    }

    #[test]
    fn tab_after_an_open_bracket_lists_the_arguments() {
        let (at, words) = candidates("loss kl(", 8, &[]);
        assert_eq!(at, 8);
        assert!(words.contains(&"T=".to_string()), "{words:?}");
        assert!(words.iter().all(|w| w.ends_with('=')), "only arguments: {words:?}");
        let (_, rest) = candidates("x = adamw(lr=1e-3, ", 19, &[]);
        assert!(!rest.contains(&"lr=".to_string()) && rest.contains(&"wd=".to_string()), "{rest:?}");
        assert!(candidates("print ", 6, &[]).1.is_empty(), "no call, no word: nothing to list");
        assert!(candidates("print stu", 9, &[]).1.contains(&"student".to_string()));
    }
}
