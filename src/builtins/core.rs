//! Small helpers every script may want: math on numbers, list length, text.

use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::eval::Value;
use crate::kind::Kinds;

fn math(name: &'static str, doc: &'static str, example: &'static str, run: super::RunFn) -> Builtin {
    Builtin {
        name,
        family: Family::Core,
        params: vec![param("x", Kinds::NUMBER, Required, "a number")],
        returns: Kinds::NUMBER,
        doc,
        example,
        run,
        pure: true,
        slots: &[],
    }
}

fn unary(args: &Args, f: fn(f64) -> f64) -> Result<Value, Diagnostic> {
    Ok(Value::Num(f(args.num("x")?)))
}

fn positive_unary(args: &Args, what: &str, f: fn(f64) -> f64) -> Result<Value, Diagnostic> {
    let x = args.num("x")?;
    if x <= 0.0 && what == "log" || x < 0.0 {
        return Err(args.error("x", format!("`{what}` needs a {} number, got {}", if what == "log" { "positive" } else { "non-negative" }, crate::spec::fmt_num(x))));
    }
    Ok(Value::Num(f(x)))
}

fn two(name: &'static str, doc: &'static str, run: super::RunFn) -> Builtin {
    Builtin {
        name,
        family: Family::Core,
        params: vec![
            param("a", Kinds::NUMBER, Required, "first number"),
            param("b", Kinds::NUMBER, Required, "second number"),
        ],
        returns: Kinds::NUMBER,
        doc,
        example: "max(1e-5, 3e-4 / 10)",
        run,
        pure: true,
        slots: &[],
    }
}

pub fn table() -> Vec<Builtin> {
    vec![
        math("abs", "absolute value", "abs(-2)", |_, a| unary(a, f64::abs)),
        math("sqrt", "square root", "sqrt(512)", |_, a| positive_unary(a, "sqrt", f64::sqrt)),
        math("log", "natural logarithm", "log(49152)", |_, a| positive_unary(a, "log", f64::ln)),
        math("exp", "e to the power x (perplexity from a loss: exp(2.58))", "exp(2.58)", |_, a| unary(a, f64::exp)),
        Builtin {
            params: vec![
                param("x", Kinds::NUMBER, Required, "a number"),
                param("digits", Kinds::NUMBER, super::Default::Num(0.0), "digits after the point").range(super::Range::NonNegativeInt),
            ],
            ..math("round", "nearest number with `digits` decimals (default: a whole number)", "round(512 * 8 / 3)", |_, a| {
                let scale = 10f64.powi(a.num("digits")? as i32);
                Ok(Value::Num((a.num("x")? * scale).round() / scale))
            })
        },
        two("min", "the smaller of two numbers", |_, a| Ok(Value::Num(a.num("a")?.min(a.num("b")?)))),
        two("max", "the larger of two numbers", |_, a| Ok(Value::Num(a.num("a")?.max(a.num("b")?)))),
        Builtin {
            name: "len",
            family: Family::Core,
            params: vec![param("x", Kinds::LIST | Kinds::STRING, Required, "a list or string")],
            returns: Kinds::NUMBER,
            doc: "number of items in a list, or characters in a string",
            example: "len([1, 2, 3])",
            run: |_, a| match a.get("x") {
                Some(Value::List(items)) => Ok(Value::Num(items.len() as f64)),
                Some(Value::Str(s)) => Ok(Value::Num(s.chars().count() as f64)),
                _ => Err(a.error("x", "`len` needs a list or a string")),
            },
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "str",
            family: Family::Core,
            params: vec![param("x", Kinds::ANY, Required, "any value")],
            returns: Kinds::STRING,
            doc: "the value as text (what `print` would show on one line)",
            example: "\"runs/\" + str(8) + \"-layers\"",
            run: |_, a| {
                let v = a.get("x").unwrap_or(Value::Nothing);
                Ok(match v {
                    Value::Str(_) => v,
                    other => Value::str(&other.short()),
                })
            },
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "params",
            family: Family::Core,
            params: vec![param("model", Kinds::MODEL, Required, "a model")],
            returns: Kinds::NUMBER,
            doc: "the model's parameter count (needs its vocabulary size)",
            example: "params(student) / 1e6",
            run: |_, a| match a.get("model") {
                Some(Value::Model(m)) => m.params().map(|p| Value::Num(p as f64)).ok_or_else(|| {
                    a.error("model", "this model's vocabulary size is not known yet")
                        .help("pass vocab= to llama(...), or set a tokenizer or teacher first")
                }),
                _ => Err(a.error("model", "`params` needs a model")),
            },
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "range",
            family: Family::Core,
            params: vec![
                param("start", Kinds::NUMBER, Required, "first number"),
                param("stop", Kinds::NUMBER, Required, "stop before this number"),
                param("step", Kinds::NUMBER, Num(1.0), "increment").range(Range::Positive),
            ],
            returns: Kinds::LIST,
            doc: "numbers from start up to (not including) stop",
            example: "range(0, 8, 2)",
            run: |_, a| {
                let (start, stop, step) = (a.num("start")?, a.num("stop")?, a.num("step")?);
                let n = ((stop - start) / step).ceil().max(0.0);
                if n > 1e6 {
                    return Err(a.error("stop", "`range` would make more than a million numbers"));
                }
                Ok(Value::List(std::rc::Rc::new((0..n as usize).map(|i| Value::Num(start + i as f64 * step)).collect())))
            },
            pure: true,
            slots: &[],
        },
    ]
}

