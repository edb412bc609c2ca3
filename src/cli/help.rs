//! `:help` texts for the REPL, read from the builtin table (one source of truth).

use kdl::builtins::{self, Family};
use kdl::syntax::Role;

pub const COMMANDS: &[(&str, &str)] = &[
    (":help [topic]", "this overview, or help on a builtin, family, role, stdlib module or `syntax`"),
    (":type EXPR", "what kind of value EXPR is, without running it"),
    (":load FILE", "run a .kd file in this session"),
    (":models", "the loaded models: params, vocabulary, device, weights"),
    (":time EXPR", "run EXPR and say how long it took"),
    (":quit", "leave (Ctrl-D works too)"),
];

const FAMILIES: [Family; Family::ALL.len()] = Family::ALL;

const SYNTAX: &str = "\
statements   let x = e · x = e · def f(a, b=1) = e · use losses · use \"file.kd\"
             teacher e · student e · tokenizer e · data e · loss e · optim e · schedule e
             train(...) · eval(...) · save e to \"path\" · print e, ... · stage NAME { ... }
expressions  3000 5e-4 1_000 20% \"text\" true [a, b] f(x, k=v) x.member x[0]
             + - * / ^ (right-assoc, above unary minus) == != < <= > >=  ·  >> chains schedules
separators   newline or ;  ·  # comments  ·  newlines inside ( ) [ ] are ignored";

pub fn overview() -> String {
    let mut out = String::from("kdl REPL. Enter statements or expressions; open brackets continue on the next line.\n\ncommands\n");
    for (c, d) in COMMANDS {
        out.push_str(&format!("  {c:<16} {d}\n"));
    }
    out.push_str("\nbuiltins by family (:help NAME for details)\n");
    for f in FAMILIES {
        let names: Vec<&str> = builtins::all().iter().filter(|b| b.family == f).map(|b| b.name).collect();
        out.push_str(&format!("  {:<11} {}\n", f.name(), names.join(", ")));
    }
    out.push_str(&format!("  {:<11} ce, pi\n", "constants"));
    out.push_str(&format!("\nroles        {}\n", Role::ALL.map(|r| r.name()).join(", ")));
    out.push_str(&format!("stdlib       {} (use NAME)\n", kdl::loader::stdlib_names().join(", ")));
    out.push_str("syntax       :help syntax");
    out
}

pub fn topic(name: &str) -> String {
    let name = name.trim();
    if name.is_empty() {
        return overview();
    }
    if name == "syntax" {
        return SYNTAX.to_string();
    }
    let mut parts = Vec::new();
    if let Some(b) = builtins::lookup(name) {
        parts.push(b.help().trim_end().to_string());
    }
    if let Some((_, _, doc)) = builtins::constants().into_iter().find(|(n, _, _)| *n == name) {
        parts.push(format!("{name}  (constant)\n  {doc}"));
    }
    if let Some(f) = FAMILIES.iter().find(|f| f.name() == name) {
        let lines: Vec<String> = builtins::all().iter().filter(|b| b.family == *f).map(|b| format!("  {:<40} {}", b.signature(), b.doc)).collect();
        parts.push(format!("{} builtins\n{}", f.name(), lines.join("\n")));
    }
    if let Some(r) = Role::from_name(name) {
        parts.push(format!(
            "{0}  (role slot)\n  `{0} e` sets it; `{0}` reads it; train/eval use it unless given {0}= ; holds {1}",
            r.name(),
            kdl::kind::role_accepts(r)
        ));
    }
    if kdl::loader::stdlib_names().contains(&name) {
        let text = kdl::loader::STDLIB.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).unwrap_or("");
        let defs: Vec<&str> = text.lines().filter(|l| l.starts_with("def ")).map(|l| l.trim_start_matches("def ")).collect();
        parts.push(format!("stdlib module {name} (use {name})\n  {}", defs.join("\n  ")));
    }
    if parts.is_empty() {
        let mut all: Vec<&str> = builtins::all().iter().map(|b| b.name).collect();
        all.extend(["syntax", "ce"]);
        all.extend(FAMILIES.iter().map(|f| f.name()));
        return match kdl::suggest::closest(name, all) {
            Some(s) => format!("no help on `{name}`; did you mean `{s}`?"),
            None => format!("no help on `{name}`; :help lists the topics"),
        };
    }
    parts.join("\n\n")
}
