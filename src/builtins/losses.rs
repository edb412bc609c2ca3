//! Loss terms. Each builtin returns a one-term loss expression; `+`, `-` and weights
//! combine them. The engine compiles the sum into one plan; see `spec::loss`.

use super::{param, Args, Builtin, Default::*, Family, Range};
use crate::diag::Diagnostic;
use crate::eval::{Interp, Value};
use crate::kind::Kinds;
use crate::spec::{fmt_num, LayerMap, LossExpr, Schedule, Term, TermKind};
use std::rc::Rc;

fn temperature(a: &Args) -> Result<Schedule, Diagnostic> {
    let t = a.schedule("T")?;
    let (lo, _) = t.range(t.span_hint());
    if lo <= 0.0 {
        return Err(a
            .error("T", format!("temperature must stay above 0, but here it reaches {}", fmt_num(lo)))
            .help("T = 1 leaves the distributions as they are; T = 2 to 4 softens them (Hinton et al.)"));
    }
    Ok(t)
}

fn term(kind: TermKind, t: Schedule, mix: Option<f64>, layers: Option<LayerMap>) -> Value {
    Value::Loss(Rc::new(LossExpr::single(Term { kind, of: None, t, mix, layers })))
}

fn gkd(_: &mut crate::eval::Interp, a: &Args) -> Result<Value, Diagnostic> {
    let unit = |name: &str| -> Result<f64, Diagnostic> {
        let x = a.num(name)?;
        if !(0.0..=1.0).contains(&x) {
            return Err(a.error(name, format!("`{name}` must be between 0 and 1, got {}", crate::spec::fmt_num(x))));
        }
        Ok(x)
    };
    let (lambda, beta) = (unit("lambda")?, unit("beta")?);
    let mut expr = match a.get("loss") {
        Some(Value::Loss(l)) => {
            if l.on_policy.is_some() || l.terms.iter().any(|(_, t)| !t.kind.is_kl_family()) {
                return Err(a.error("loss", "the divergence on the samples is a KL-family term: kl, rkl, js, tvd, skl or srkl").help("e.g. gkd(loss=srkl(a=0.1))"));
            }
            (*l).clone()
        }
        _ => {
            // TRL's generalised JSD; its ends are the plain divergences.
            let (kind, mix) = if beta == 0.0 {
                (TermKind::Kl, None)
            } else if beta == 1.0 {
                (TermKind::Rkl, None)
            } else {
                (TermKind::Js, Some(beta))
            };
            LossExpr::single(Term { kind, of: None, t: Schedule::Const(1.0), mix, layers: None })
        }
    };
    expr.on_policy = Some(crate::spec::OnPolicy { lambda, temperature: a.num("T")?, max_new: a.count("max_new")?, replay: a.count("replay")? });
    Ok(Value::Loss(Rc::new(expr)))
}

fn layer_map(a: &Args) -> Result<LayerMap, Diagnostic> {
    match a.get("layers") {
        None => Ok(LayerMap::Every(1)),
        Some(Value::Layers(m)) => Ok((*m).clone()),
        Some(Value::List(items)) => {
            let mut pairs = Vec::new();
            for item in items.iter() {
                match item {
                    Value::List(p) if p.len() == 2 => match (&p[0], &p[1]) {
                        (Value::Num(s), Value::Num(t)) if *s >= 0.0 && *t >= 0.0 && s.fract() == 0.0 && t.fract() == 0.0 => {
                            pairs.push((*s as usize, *t as usize))
                        }
                        _ => return Err(a.error("layers", "layer numbers must be whole numbers, 0 or more")),
                    },
                    _ => {
                        return Err(a
                            .error("layers", "each layer pair is [student_layer, teacher_layer]")
                            .help("write layers=[[0, 1], [1, 3]] or layers=every(2)"))
                    }
                }
            }
            if pairs.is_empty() {
                return Err(a.error("layers", "the layer map is empty"));
            }
            Ok(LayerMap::Pairs(pairs))
        }
        Some(_) => Err(a.error("layers", "`layers` must be a list of [student, teacher] pairs or every(n)")),
    }
}

/// `T=`: a KL-family term's temperature.
fn temperature_param() -> super::ParamSpec {
    param("T", Kinds::SCALAR, Num(1.0), "temperature (number or schedule)")
}

/// A DistiLLM skew term: a temperature and the skew `a`, default 0.1.
fn skewed(name: &'static str, skew: &'static str, doc: &'static str, example: &'static str, run: super::RunFn) -> Builtin {
    Builtin {
        name,
        family: Family::Losses,
        params: vec![temperature_param(), param("a", Kinds::NUMBER, Num(0.1), skew).range(Range::OpenUnit)],
        returns: Kinds::LOSS,
        doc,
        example,
        run,
        pure: true,
        slots: &[],
    }
}

fn tempered(name: &'static str, kind: TermKind, doc: &'static str, example: &'static str) -> Builtin {
    Builtin {
        name,
        family: Family::Losses,
        params: vec![temperature_param()],
        returns: Kinds::LOSS,
        doc,
        example,
        run: match kind {
            TermKind::Kl => run_kl,
            TermKind::Rkl => run_rkl,
            _ => run_tvd,
        },
        pure: true,
        slots: &[],
    }
}

fn run_kl(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    Ok(term(TermKind::Kl, temperature(a)?, None, None))
}

fn run_rkl(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    Ok(term(TermKind::Rkl, temperature(a)?, None, None))
}

fn run_tvd(_: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    Ok(term(TermKind::Tvd, temperature(a)?, None, None))
}

pub fn constants() -> Vec<(&'static str, Value, &'static str)> {
    vec![(
        "ce",
        Value::Loss(Rc::new(LossExpr::single(Term { kind: TermKind::Ce, of: None, t: Schedule::Const(1.0), mix: None, layers: None }))),
        "cross-entropy of the student on the data's next tokens (hard labels)",
    )]
}

pub fn table() -> Vec<Builtin> {
    let t = temperature_param;
    let layers = || param("layers", Kinds::LIST, Optional, "[[student, teacher], ...] layer pairs, or every(n)");
    vec![
        tempered("kl", TermKind::Kl, "forward KL(teacher ‖ student) on tempered distributions", "kl(T=2)*T^2"),
        tempered("rkl", TermKind::Rkl, "reverse KL(student ‖ teacher): mode-seeking", "rkl(T=1)"),
        tempered("tvd", TermKind::Tvd, "total variation distance between tempered distributions", "tvd(T=1)"),
        Builtin {
            name: "js",
            family: Family::Losses,
            params: vec![t(), param("beta", Kinds::NUMBER, Num(0.5), "mixture weight").range(Range::OpenUnit)],
            returns: Kinds::LOSS,
            doc: "generalised Jensen–Shannon divergence with mixture weight beta",
            example: "js(T=1, beta=0.5)",
            run: |_, a| Ok(term(TermKind::Js, temperature(a)?, Some(a.num("beta")?), None)),
            pure: true,
            slots: &[],
        },
        skewed("skl", "skew: KL(p ‖ a·p + (1−a)·q)", "skew KL divergence (DistiLLM): KL(teacher ‖ a·teacher + (1−a)·student)", "skl(T=1, a=0.1)", |_, a| {
            Ok(term(TermKind::Skl, temperature(a)?, Some(a.num("a")?), None))
        }),
        skewed("srkl", "skew: KL(q ‖ (1−a)·p + a·q)", "skew reverse KL divergence (DistiLLM): KL(student ‖ (1−a)·teacher + a·student)", "srkl(T=1, a=0.1)", |_, a| {
            Ok(term(TermKind::Srkl, temperature(a)?, Some(a.num("a")?), None))
        }),
        Builtin {
            name: "gkd",
            family: Family::Losses,
            params: vec![
                param("lambda", Kinds::NUMBER, Num(0.5), "the fraction of steps trained on the student's own samples (0: never, plain KD)").range(Range::UnitWarn),
                param("beta", Kinds::NUMBER, Num(0.5), "the generalised JSD's weight: 0 is kl (forward), 1 is rkl (reverse)").range(Range::UnitWarn),
                param("T", Kinds::NUMBER, Num(0.9), "the student's sampling temperature (the loss is at T = 1)").range(Range::Positive),
                param("max_new", Kinds::NUMBER, Num(128.0), "most tokens the student samples per prompt").range(Range::PositiveInt),
                param("replay", Kinds::NUMBER, Num(0.0), "keep the last N sampled rows and reuse them on half the on-policy steps").range(Range::NonNegativeInt),
                param("loss", Kinds::LOSS, Optional, "the divergence on the samples instead of the JSD, e.g. skl(a=0.1) or srkl(a=0.1)"),
            ],
            returns: Kinds::LOSS,
            doc: "on-policy distillation (GKD, TRL's GKDTrainer): with probability lambda a step's prompts are continued by the student at T and the teacher scores those tokens with the generalised JSD of weight beta",
            example: "gkd(lambda=0.5, beta=0.5, T=0.9, max_new=64)",
            run: gkd,
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "mse",
            family: Family::Losses,
            params: vec![layers()],
            returns: Kinds::LOSS,
            doc: "mean squared error between matched hidden states (a learned projection when widths differ)",
            example: "mse(layers=every(2))",
            run: |_, a| Ok(term(TermKind::Mse, Schedule::Const(1.0), None, Some(layer_map(a)?))),
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "cosine",
            family: Family::Schedules,
            params: vec![
                param("from", Kinds::NUMBER, Optional, "schedule: first value"),
                param("to", Kinds::NUMBER, Optional, "schedule: last value"),
                param("steps", Kinds::NUMBER, Optional, "schedule: length (default: the rest of the run)").range(Range::PositiveInt),
                layers(),
            ],
            returns: Kinds::SCHEDULE | Kinds::LOSS,
            doc: "two uses: cosine(from, to) is a cosine-decay schedule; cosine(layers=..) is a cosine-distance loss on hidden states",
            example: "warmup(200) >> cosine(5e-4, 5e-5)",
            run: |_, a| cosine(a),
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "every",
            family: Family::Losses,
            params: vec![param("n", Kinds::NUMBER, Required, "teacher layers per student layer").range(Range::PositiveInt)],
            returns: Kinds::LIST,
            doc: "layer map for hidden-state losses: student layer i matches teacher layer (i+1)·n − 1",
            example: "mse(layers=every(2))",
            run: |_, a| Ok(Value::Layers(Rc::new(LayerMap::Every(a.count("n")?)))),
            pure: true,
            slots: &[],
        },
    ]
}

/// Which `cosine` is meant follows from its arguments; see the table entry.
fn cosine(a: &Args) -> Result<Value, Diagnostic> {
    if a.given("layers") {
        if a.given("from") || a.given("to") || a.given("steps") {
            return Err(a
                .error("layers", "`cosine` got both schedule arguments and layers=")
                .help("cosine(from, to) is a schedule; cosine(layers=..) is a hidden-state loss: use one"));
        }
        return Ok(term(TermKind::Cosine, Schedule::Const(1.0), None, Some(layer_map(a)?)));
    }
    match (a.opt_num("from")?, a.opt_num("to")?) {
        (Some(from), Some(to)) => Ok(Value::Schedule(Rc::new(Schedule::Cosine { from, to, steps: a.opt_num("steps")?.map(|s| s as u64) }))),
        _ => Err(Diagnostic::error("`cosine` needs from and to (a schedule) or layers= (a hidden-state loss)")
            .label(a.call_span, "incomplete")
            .help("write cosine(5e-4, 5e-5) for a decay, or cosine(layers=every(2)) for a loss")),
    }
}
