//! `lang/builtins.md` is generated from the builtin table, so the reference cannot drift
//! from what the checker and evaluator accept. Regenerate with
//! `KDL_BLESS=1 cargo test --test reference`.

use kdl::builtins::{self, Family};

fn render() -> String {
    let mut out = String::from(
        "# Builtins reference\n\n<!-- Generated from the builtin table by tests/reference.rs; edit the table, then run\n     KDL_BLESS=1 cargo test --test reference -->\n\n\
         Arguments are positional in the order shown, or named (`name=value`). `x.f(a)` calls the builtin `f(x, a)`\n(builtins only, and only when `x` has no member `f`).\n\
         In the REPL, `:help NAME` shows the same text.\n",
    );
    for f in Family::ALL {
        out.push_str(&format!("\n## {}\n", f.name()));
        for b in builtins::all().iter().filter(|b| b.family == f) {
            out.push_str(&format!("\n### `{}`\n\n{} Returns {}.\n\n", b.signature(), capitalise(b.doc), b.returns));
            if !b.params.is_empty() {
                out.push_str("| argument | kind | default | meaning |\n|---|---|---|---|\n");
                for p in &b.params {
                    let default = match (p.default, p.default_text()) {
                        (_, Some(d)) => format!("`{d}`"),
                        (builtins::Default::Required, None) => "required".to_string(),
                        _ => "—".to_string(),
                    };
                    out.push_str(&format!("| `{}` | {} | {} | {} |\n", p.name, p.kinds, default, p.doc.replace('|', "\\|")));
                }
                out.push('\n');
            }
            out.push_str(&format!("```\n{}\n```\n", b.example));
        }
    }
    out.push_str("\n## constants\n\n");
    for (name, _, doc) in builtins::constants() {
        out.push_str(&format!("- `{name}`: {doc}\n"));
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    let mut out: String = c.next().map(|f| f.to_uppercase().collect()).unwrap_or_default();
    out.extend(c);
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[test]
fn builtins_reference_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lang/builtins.md");
    let fresh = render();
    if std::env::var_os("KDL_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write lang/builtins.md");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(on_disk == fresh, "lang/builtins.md is out of date: run KDL_BLESS=1 cargo test --test reference");
}

#[test]
fn the_reference_lists_every_builtin_in_the_table() {
    // A family left out of the rendering once dropped 17 builtins (chat, lora, merge...).
    let text = render();
    let missing: Vec<&str> = builtins::all().iter().map(|b| b.name).filter(|n| !text.contains(&format!("\n### `{n}("))).collect();
    assert!(missing.is_empty(), "lang/builtins.md lacks {missing:?}");
}

#[test]
fn every_builtin_example_checks() {
    // Examples in the table are real kdl: each must at least parse and name real things.
    for b in builtins::all() {
        let mut s = kdl::Session::capture();
        let src = format!("use arch\nlet example_value = {}", b.example);
        if let Err(e) = s.prepare_str("<example>", &src) {
            let stmt_src = format!("use arch\nteacher llama(layers=2, dim=128, vocab=1000)\nstudent llama(layers=2, dim=128)\ndata \"examples/data/moby_dick.txt\"\nloss ce\nstage deep {{\n}}\nstage wide {{\n}}\n{}", b.example);
            let mut s2 = kdl::Session::capture();
            assert!(s2.prepare_str("<example>", &stmt_src).is_ok(), "example of `{}` does not check: {} ({:?})", b.name, b.example, e.diagnostics.first().map(|d| &d.message));
        }
    }
}
