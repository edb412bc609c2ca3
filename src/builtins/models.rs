//! Model builders. `llama(...)` fills what is not given by the usual recipes: heads from a
//! 64-wide head, SwiGLU width, tied embeddings (the small-student default).

use super::{param, Args, Builtin, Default::*, Family, ParamSpec, Range};
use crate::diag::Diagnostic;
use crate::engine::device::{parse_device, parse_dtype};
use crate::eval::{ModelValue, Value};
use crate::kind::Kinds;
use crate::spec::model::{swiglu_hidden, DEFAULT_HEAD_DIM};
use crate::spec::LlamaSpec;
use std::rc::Rc;

/// The divisor of `n` closest to `target` (for a heads= suggestion).
fn nearest_divisor(n: usize, target: usize) -> usize {
    (1..=n.max(1)).filter(|d| n % d == 0).min_by_key(|d| d.abs_diff(target.max(1))).unwrap_or(1)
}

/// Far beyond any model kdl could build; past it a size is a typo.
const MAX_SIZE: f64 = 16_777_216.0;

fn llama(interp: &mut crate::eval::Interp, a: &Args) -> Result<Value, Diagnostic> {
    for name in ["layers", "dim", "heads", "kv_heads", "ffn", "vocab", "max_seq"] {
        if a.opt_num(name)?.is_some_and(|x| x > MAX_SIZE) {
            return Err(a.error(name, format!("`{name}` is unreasonably large (more than {MAX_SIZE})")));
        }
    }
    let layers = a.count("layers")?;
    let dim = a.count("dim")?;
    let heads = match a.opt_count("heads")? {
        Some(h) => h,
        None => {
            if dim % DEFAULT_HEAD_DIM != 0 {
                return Err(a
                    .error("dim", format!("dim {dim} is not a multiple of {DEFAULT_HEAD_DIM}, so kdl cannot pick the number of heads"))
                    .help(format!("pass heads= so that dim / heads is a whole head width (e.g. heads={})", nearest_divisor(dim, dim / DEFAULT_HEAD_DIM))));
            }
            dim / DEFAULT_HEAD_DIM
        }
    };
    if dim % heads != 0 {
        return Err(a
            .error("heads", format!("dim {dim} does not split into {heads} heads"))
            .help("choose heads so that dim / heads is a whole number (64 is usual)"));
    }
    let kv_heads = a.opt_count("kv_heads")?.unwrap_or(heads);
    if kv_heads > heads || heads % kv_heads != 0 {
        return Err(a
            .error("kv_heads", format!("{heads} query heads cannot share {kv_heads} key/value heads evenly"))
            .help("grouped-query attention needs heads to be a multiple of kv_heads (e.g. 9 heads with 3 kv_heads)"));
    }
    let spec = LlamaSpec {
        layers,
        dim,
        heads,
        kv_heads,
        ffn: a.opt_count("ffn")?.unwrap_or_else(|| swiglu_hidden(dim)),
        vocab: a.opt_count("vocab")?,
        tie: a.boolean("tie")?,
        rope_theta: a.num("rope_theta")?,
        norm_eps: a.num("norm_eps")?,
        max_seq: a.count("max_seq")?,
        qkv_bias: a.boolean("qkv_bias")?,
        o_bias: false,
    };
    let (device, dtype) = placement(a)?;
    let model = ModelValue::built(spec, a.num("seed")? as u64, device, dtype);
    // Without vocab=, the script's teacher or tokenizer sizes it now, as the student slot
    // would: a model kept in a `let` and trained by name is then the model trained.
    let model = match (model.vocab, interp.vocab_source()) {
        (None, Some(src)) => model.with_vocab_from(&src),
        _ => model,
    };
    Ok(Value::Model(Rc::new(model)))
}

/// The `device=` and `dtype=` arguments: CUDA when present, else the CPU; bf16 on CUDA,
/// f32 on the CPU.
pub fn placement(a: &Args) -> Result<(tch::Device, tch::Kind), Diagnostic> {
    let device = parse_device(&a.string("device")?).map_err(|e| a.error("device", e))?;
    let dtype = parse_dtype(&a.string("dtype")?, device).map_err(|e| a.error("dtype", e))?;
    Ok((device, dtype))
}

/// `device=` of an action on a model (`train`, `generate`): "auto" runs where the model
/// lives; a named device must be here.
pub fn run_device(a: &Args, lives_on: tch::Device) -> Result<tch::Device, Diagnostic> {
    match a.string("device")?.as_str() {
        "auto" => Ok(lives_on),
        name => parse_device(name).map_err(|e| a.error("device", e)),
    }
}

/// The `device=` / `dtype=` parameters every model-making builtin takes.
pub fn placement_params() -> [ParamSpec; 2] {
    let s = Kinds::STRING;
    [
        param("device", s, Str("auto"), "\"cpu\", \"cuda\", \"cuda:N\" or \"auto\" (CUDA when present)"),
        param("dtype", s, Str("auto"), "\"f32\", \"bf16\", \"f16\" or \"auto\" (bf16 on CUDA, f32 on the CPU)"),
    ]
}

pub fn table() -> Vec<Builtin> {
    let n = Kinds::NUMBER;
    let b = Kinds::BOOL;
    vec![Builtin {
        name: "llama",
        family: Family::Models,
        params: vec![
            param("layers", n, Required, "decoder blocks").range(Range::PositiveInt),
            param("dim", n, Required, "hidden width").range(Range::PositiveInt),
            param("heads", n, Optional, "attention heads (default dim/64)").range(Range::PositiveInt),
            param("kv_heads", n, Optional, "key/value heads for grouped-query attention (default heads)").range(Range::PositiveInt),
            param("ffn", n, Optional, "SwiGLU hidden width (default 8/3·dim rounded up to 64)").range(Range::PositiveInt),
            param("vocab", n, Optional, "vocabulary size (default: the tokenizer's or the teacher's)").range(Range::PositiveInt),
            param("tie", b, Bool(true), "share the input embedding with the output head"),
            param("rope_theta", n, Num(10000.0), "RoPE base frequency").range(Range::Positive),
            param("norm_eps", n, Num(1e-5), "RMSNorm epsilon").range(Range::Positive),
            param("max_seq", n, Num(2048.0), "longest sequence").range(Range::PositiveInt),
            param("qkv_bias", b, Bool(false), "bias on q/k/v projections (Qwen2-style)"),
            param("seed", n, Num(0.0), "seed of the weight initialisation").range(Range::NonNegativeInt),
        ]
        .into_iter()
        .chain(placement_params())
        .collect(),
        returns: Kinds::MODEL,
        doc: "a llama-family decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU",
        example: "llama(layers=8, dim=512)",
        run: llama,
        pure: true,
        slots: &[],
    }]
}
