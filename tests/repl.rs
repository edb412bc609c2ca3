//! End-to-end REPL sessions through a real pseudo-terminal. Each test starts its own tmux
//! server running `kdl repl`, types into it with `send-keys` (literal text, Tab, Enter,
//! Ctrl-C) and polls `capture-pane` for what a person would see. tmux is required: without
//! it these tests fail with a message saying so rather than passing vacuously.
//!
//! The REPL runs with NO_COLOR=1 (and `capture-pane` without -e drops attributes anyway), so
//! the captured screen is plain text; `plain` strips any escape that would slip through.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const KDL: &str = env!("CARGO_BIN_EXE_kdl");
const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

static SERVERS: AtomicUsize = AtomicUsize::new(0);

/// Single-quotes `s` for the shell tmux runs the pane command with.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Removes ANSI escape sequences (CSI and OSC), in case colour reaches the screen after all.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// One tmux server with one pane running `kdl repl`; dropping it kills the server (also when
/// the test panics) and removes its scratch folder. The server's socket lives in that folder
/// (`-S`, not `-L`), since tmux leaves its socket file behind when it is killed.
struct Repl {
    socket: PathBuf,
    dir: PathBuf,
}

impl Repl {
    fn start(test: &str) -> Repl {
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kdl-repl-{test}-{}-{n}", std::process::id()));
        let socket = dir.join("tmux.sock");
        std::fs::create_dir_all(&dir).expect("create the test's scratch folder");
        // Our own config, not the user's: no status line, a long scrollback, and a pane that
        // stays on screen when kdl exits, so a crash shows up in the failure message.
        let conf = dir.join("tmux.conf");
        std::fs::write(&conf, "set -g status off\nset -g history-limit 20000\nset -g remain-on-exit on\n").expect("write tmux.conf");
        let history = dir.join("history");
        let command = format!(
            "exec env NO_COLOR=1 KDL_HISTORY={} {} repl",
            shell_quote(&history.display().to_string()),
            shell_quote(KDL)
        );
        let repl = Repl { socket, dir };
        let manifest = env!("CARGO_MANIFEST_DIR");
        let out = repl.tmux_with_conf(&conf, &["new-session", "-d", "-x", "160", "-y", "50", "-c", manifest, &command]);
        assert!(out.status.success(), "tmux new-session failed: {}", String::from_utf8_lossy(&out.stderr));
        repl
    }

    fn run(&self, mut cmd: Command) -> Output {
        match cmd.output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("tests/repl.rs drives `kdl repl` through tmux, and tmux is not installed (or not on PATH): install it, e.g. `apt-get install tmux`")
            }
            Err(e) => panic!("cannot run tmux: {e}"),
        }
    }

    fn tmux_with_conf(&self, conf: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new("tmux");
        cmd.arg("-f").arg(conf).arg("-S").arg(&self.socket).args(args);
        self.run(cmd)
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(args);
        self.run(cmd)
    }

    fn send(&self, args: &[&str]) {
        let mut all = vec!["send-keys", "-t", "0"];
        all.extend_from_slice(args);
        let out = self.tmux(&all);
        assert!(out.status.success(), "tmux send-keys {args:?} failed: {}\nscreen:\n{}", String::from_utf8_lossy(&out.stderr), self.screen());
    }

    /// Types `text` as it is (no key names).
    fn type_text(&self, text: &str) {
        self.send(&["-l", text]);
    }

    /// Presses a key by its tmux name: Tab, Enter, C-c, C-u.
    fn key(&self, key: &str) {
        self.send(&[key]);
    }

    /// Types a line and presses Enter.
    fn enter(&self, line: &str) {
        self.type_text(line);
        self.key("Enter");
    }

    /// The whole pane, scrollback included, with wrapped lines joined.
    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "0"]);
        let text = plain(&String::from_utf8_lossy(&out.stdout));
        text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_string()
    }

    /// Polls the screen until `ok` holds; fails with the screen after the timeout.
    fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            // remain-on-exit keeps the pane up after kdl exits, with this line at the bottom.
            if screen.lines().last().is_some_and(|l| l.starts_with("Pane is dead")) {
                panic!("kdl exited while waiting for {what}; the screen:\n{screen}");
            }
            if start.elapsed() > TIMEOUT {
                panic!("timed out after {TIMEOUT:?} waiting for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(POLL);
        }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.wait_until(&format!("{needle:?}"), |s| s.contains(needle))
    }

    /// Waits until the REPL is idle at an empty prompt.
    fn wait_prompt(&self) -> String {
        self.wait_until("an empty `kdl> ` prompt", |s| s.lines().last() == Some("kdl>"))
    }

    /// Enters `line` at the prompt and waits until the screen shows it; returns the line as
    /// echoed after the prompt. Counting the echoes makes a repeated entry wait for its own.
    fn submit(&self, line: &str) -> String {
        let echo = format!("kdl> {line}");
        let before = echoes(&self.screen(), &echo);
        self.enter(line);
        self.wait_until(&format!("the entry `{line}`"), |s| echoes(s, &echo) > before);
        echo
    }

    /// Enters `line`, waits for the next prompt and returns what was shown in between.
    fn eval(&self, line: &str) -> String {
        let echo = self.submit(line);
        let screen = self.wait_until(&format!("the output of `{line}` and a new prompt"), |s| {
            after_last(s, &echo).is_some_and(|rest| rest.lines().last() == Some("kdl>"))
        });
        let rest = after_last(&screen, &echo).unwrap();
        rest.strip_suffix("kdl>").unwrap_or(rest).trim_matches('\n').to_string()
    }

    /// Enters a long generation, presses Ctrl-C once text streams, and waits for the
    /// `[stopped]` line and a new prompt; returns what was shown in between.
    fn interrupt_generation(&self, entry: &str) -> String {
        let echo = self.submit(entry);
        let screen = self.wait_until("generated text", |s| after_last(s, &echo).is_some_and(|rest| rest.trim().len() >= 20));
        let before = after_last(&screen, &echo).unwrap().len();
        self.key("C-c");
        // Generation stops within a token of the signal; far more text means it went on.
        let screen = self.wait_until("a new prompt after Ctrl-C", |s| {
            after_last(s, &echo).is_some_and(|rest| rest.lines().last() == Some("kdl>") || rest.len() > before + 1000)
        });
        let rest = after_last(&screen, &echo).unwrap();
        let stopped = rest.lines().any(|l| l == "[stopped]") && rest.lines().last() == Some("kdl>");
        assert!(stopped, "Ctrl-C did not stop `{entry}`: no `[stopped]` line, or generation went on; the screen:\n{screen}");
        rest.to_string()
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let tmux = || {
            let mut cmd = Command::new("tmux");
            cmd.arg("-S").arg(&self.socket);
            cmd
        };
        let pid = tmux().args(["display-message", "-p", "-t", "0", "#{pane_pid}"]).output().ok();
        let pid = pid.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().ok());
        let _ = tmux().arg("kill-server").output();
        // kdl saves its history as it leaves, creating the folder again if it is gone: let
        // it finish before cleaning up.
        if let Some(pid) = pid {
            let start = Instant::now();
            while running(pid) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(POLL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether process `pid` is still running (not gone, not a zombie).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// How many lines of the screen are `echo`.
fn echoes(screen: &str, echo: &str) -> usize {
    screen.lines().filter(|l| *l == echo).count()
}

/// The text after the last line that is `echo` (an entry as the prompt shows it).
fn after_last<'a>(screen: &'a str, echo: &str) -> Option<&'a str> {
    let mut at = None;
    let mut offset = 0;
    for line in screen.split_inclusive('\n') {
        if line.trim_end() == echo {
            at = Some(offset + line.len());
        }
        offset += line.len();
    }
    at.map(|i| &screen[i..])
}

fn moby_dick() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/moby_dick.txt");
    assert!(path.is_file(), "missing {}", path.display());
    path.display().to_string()
}

#[test]
fn tab_completes_argument_names_and_builtins() {
    let repl = Repl::start("complete");
    repl.wait_prompt();

    repl.type_text("student llama(lay");
    repl.key("Tab");
    repl.wait_until("`layers` completed inside llama(...)", |s| s.lines().last().is_some_and(|l| l.starts_with("kdl> student llama(layers")));
    repl.key("C-u");
    repl.wait_prompt();

    repl.type_text("gener");
    repl.key("Tab");
    repl.wait_until("`gener` completed to `generate`", |s| s.lines().last() == Some("kdl> generate"));
    repl.key("C-u");
    repl.wait_prompt();

    // Completion edits the line only: the session goes on as before.
    assert_eq!(repl.eval("1 + 1"), "2");
}

#[test]
fn open_brackets_continue_the_entry_and_type_shows_kinds() {
    let repl = Repl::start("multiline");
    repl.wait_prompt();

    repl.enter("let x = [1,");
    repl.wait_for("let x = [1,");
    repl.enter("2, 3]");
    repl.wait_prompt();
    assert_eq!(repl.eval("x"), "[1, 2, 3]");

    // `:type` names the kind, then shows the value when it is known before running.
    let kind = repl.eval(":type 0.5*ce + 0.5*kl(T=2)*T^2");
    assert!(kind == "loss" || kind.starts_with("loss = "), "{kind}");
}

#[test]
fn errors_are_reported_with_a_suggestion_and_the_session_goes_on() {
    let repl = Repl::start("errors");
    repl.wait_prompt();

    repl.eval("student llama(layers=2, dim=64, vocab=100)");
    let report = repl.eval("print studnet");
    assert!(report.contains("`studnet` is not defined"), "{report}");
    assert!(report.contains("did you mean `student`?"), "{report}");

    assert_eq!(repl.eval("1 + 1"), "2");
}

#[test]
fn topk_shows_the_next_token_table() {
    let repl = Repl::start("topk");
    repl.wait_prompt();

    let tok = repl.eval(&format!("tokenizer bpe(vocab=300, from={:?})", moby_dick()));
    assert!(!tok.contains("rror"), "{tok}");
    let m = repl.eval("let m = llama(layers=1, dim=64, heads=4, vocab=300, seed=1)");
    assert!(m.is_empty(), "{m}");

    let table = repl.eval("topk(m, \"Call me\", k=3, T=[1, 2])");
    let lines: Vec<&str> = table.lines().collect();
    let header = lines.iter().position(|l| l.contains("p T=1")).unwrap_or_else(|| panic!("no header in:\n{table}"));
    assert!(lines[header].contains("p T=2") && lines[header].contains("token"), "{table}");
    for rank in 1..=3 {
        let row = lines.get(header + rank).unwrap_or_else(|| panic!("no row {rank} in:\n{table}"));
        assert!(row.trim_start().starts_with(&rank.to_string()), "row {rank} is {row:?} in:\n{table}");
    }
    assert!(!lines.get(header + 4).is_some_and(|l| l.trim_start().starts_with('4')), "more than 3 rows:\n{table}");
    assert!(table.contains("dark knowledge"), "{table}");

    let models = repl.eval(":models");
    assert!(models.lines().any(|l| l.split_whitespace().next() == Some("m")), "{models}");

    let time = repl.eval(":time 1+1");
    assert!(time.lines().any(|l| l == "2"), "{time}");
    assert!(time.contains("time:"), "{time}");
}

#[test]
fn ctrl_c_stops_generation_and_returns_to_the_prompt() {
    let repl = Repl::start("interrupt");
    repl.wait_prompt();

    repl.eval(&format!("tokenizer bpe(vocab=300, from={:?})", moby_dick()));
    repl.eval("let m = llama(layers=1, dim=64, heads=4, vocab=300, seed=1, max_seq=8192)");

    // 5000 tokens take several seconds on this model: stop it once text is streaming.
    // Greedy, because sampling a random-weight byte-level model streams raw control bytes
    // (ESC, SO, ...) to the terminal within a few hundred tokens, which can garble the pane.
    let entry = "generate(m, \"Call\", max=5000, temp=0)";
    repl.interrupt_generation(entry);
    assert_eq!(repl.eval("1+1"), "2");

    // A second stop works as the first did, and does not end the session.
    repl.interrupt_generation(entry);
    assert_eq!(repl.eval("1+1"), "2");
}
