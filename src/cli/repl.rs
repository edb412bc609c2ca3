//! The interactive loop. It owns no language logic: each entry goes to the `Session`,
//! whose bindings and slots persist; errors are ariadne reports of the entry.

use super::help;
use super::repl_helper::KdlHelper;
use kdl::eval::Value;
use kdl::Session;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KDL_HISTORY") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("kdl").join("history"))
}

struct Repl {
    session: Session,
    color: bool,
    entries: usize,
}

impl Repl {
    fn show_errors(&self, e: &kdl::session::Error) {
        eprint!("{}", self.session.render(&e.diagnostics, self.color));
    }

    fn show_warnings(&mut self) {
        let w = self.session.take_warnings();
        if !w.is_empty() {
            eprint!("{}", self.session.render(&w, self.color));
        }
    }

    fn load(&mut self, path: &str) {
        match self.session.prepare_file(&PathBuf::from(path)) {
            Ok(p) => {
                self.show_warnings();
                if let Err(e) = self.session.execute(p) {
                    self.show_errors(&e);
                }
            }
            Err(e) => self.show_errors(&e),
        }
    }

    /// Returns false when the user asked to leave.
    fn command(&mut self, line: &str) -> bool {
        let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match cmd {
            ":q" | ":quit" | ":exit" => return false,
            ":h" | ":help" => println!("{}", help::topic(rest)),
            ":t" | ":type" => match self.session.type_of(rest) {
                Ok(a) => match &a.value {
                    Some(v) if !matches!(v, Value::Builtin(_)) => println!("{} = {}", a.kinds, v.short()),
                    Some(Value::Builtin(b)) => println!("function {}", b.signature()),
                    _ => println!("{}", a.kinds),
                },
                Err(e) => self.show_errors(&e),
            },
            ":load" | ":l" => self.load(rest.trim()),
            ":models" | ":m" => self.models(),
            ":time" => {
                let start = std::time::Instant::now();
                self.entry(rest);
                println!("time: {:.1} ms", start.elapsed().as_secs_f64() * 1000.0);
            }
            _ => {
                let names: Vec<&str> = help::COMMANDS.iter().map(|(c, _)| c.split(' ').next().unwrap_or(c)).collect();
                match kdl::suggest::closest(cmd, names.iter().copied()) {
                    Some(s) => eprintln!("unknown command `{cmd}`; did you mean `{s}`?"),
                    None => eprintln!("unknown command `{cmd}`; :help lists the commands"),
                }
            }
        }
        true
    }

    /// `:models`: every model bound to a name or a role slot, with size and placement.
    fn models(&self) {
        let mut rows: Vec<(String, std::rc::Rc<kdl::eval::ModelValue>)> = Vec::new();
        for role in [kdl::syntax::Role::Teacher, kdl::syntax::Role::Student] {
            if let Some(Value::Model(m)) = self.session.slot(role) {
                rows.push((role.name().to_string(), m));
            }
        }
        for name in self.session.names() {
            if let Some(Value::Model(m)) = self.session.get(&name) {
                rows.push((name, m));
            }
        }
        if rows.is_empty() {
            println!("no models yet: try `teacher load(\"smollm2\")` or `let m = llama(layers=2, dim=64, vocab=1000)`");
            return;
        }
        for (name, m) in rows {
            let params = m.params().map(kdl::spec::fmt_count).unwrap_or_else(|| "?".into());
            let vocab = m.vocab.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
            let weights = if m.has_weights() { "weights" } else { "spec only" };
            println!("{name:<10} {params:>8} params · vocab {vocab:>6} · {} · {weights} · {}", m.placement(), m.spec.one_line());
        }
    }

    fn entry(&mut self, text: &str) {
        // A Ctrl-C that stopped the last entry is handled; the next one starts clean.
        kdl::interrupt::clear();
        self.entries += 1;
        let name = format!("<repl:{}>", self.entries);
        match self.session.prepare_str(&name, text) {
            Ok(p) => {
                self.show_warnings();
                match self.session.execute(p) {
                    Ok(Some(v)) if !matches!(v, Value::Nothing) && !self.session.streamed() => println!("{}", v.display()),
                    Ok(_) => {}
                    Err(e) => self.show_errors(&e),
                }
            }
            Err(e) => self.show_errors(&e),
        }
    }
}

pub fn run(file: Option<PathBuf>, color: bool) -> ExitCode {
    let mut session = Session::new();
    session.set_interactive(true);
    session.set_color(color);
    let mut repl = Repl { session, color, entries: 0 };
    let names = Rc::new(RefCell::new(Vec::new()));
    let config = Config::builder().auto_add_history(true).completion_type(rustyline::CompletionType::List).build();
    let mut editor: Editor<KdlHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the line editor: {e}");
            return ExitCode::from(2);
        }
    };
    editor.set_helper(Some(KdlHelper { names: names.clone(), color }));
    // rustyline's terminal replaces the SIGINT handler for the editor's lifetime (Ctrl-C at
    // the prompt is a key in raw mode; the signal only comes while an entry runs), so the
    // handler that stops generation and training goes in after it.
    kdl::interrupt::install();
    if let Some(f) = &file {
        repl.load(&f.display().to_string());
    }
    *names.borrow_mut() = repl.session.names();
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!("kdl {} · {} · :help for help, :quit to leave", env!("CARGO_PKG_VERSION"), kdl::engine::describe_device());
    loop {
        match editor.readline("kdl> ") {
            Ok(line) => {
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                if text.starts_with(':') {
                    if !repl.command(text) {
                        break;
                    }
                } else {
                    repl.entry(&line);
                }
                *names.borrow_mut() = repl.session.names();
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.save_history(h);
    }
    ExitCode::SUCCESS
}
