//! `export(model, "m.gguf", quant=...)`: a model as a GGUF file for llama.cpp and its
//! family (`engine::gguf::export`). `save model to "m.gguf"` is the same at f16.

use super::inference::model_arg;
use super::{param, Args, Builtin, Default::*, Family};
use crate::diag::Diagnostic;
use crate::engine::gguf::FileType;
use crate::eval::{Interp, Value};
use crate::kind::Kinds;

fn export(interp: &mut Interp, a: &Args) -> Result<Value, Diagnostic> {
    let m = model_arg(a, "model")?;
    let path = a.string("path")?;
    if !path.to_ascii_lowercase().ends_with(".gguf") {
        return Err(a.error("path", format!("export writes a GGUF file, and {path:?} does not end with .gguf")).help("e.g. export(student, \"student.gguf\", quant=\"q8_0\"); save a Hugging Face folder with `save student to \"out/student\"`"));
    }
    let ft = FileType::parse(&a.string("quant")?).map_err(|e| a.error("quant", e))?;
    let target = interp.resolve_path(&path);
    crate::eval::save::export_gguf(interp, &m, &target, ft, a.span("model"))?;
    Ok(Value::str(&target.display().to_string()))
}

pub fn table() -> Vec<Builtin> {
    let s = Kinds::STRING;
    vec![Builtin {
        name: "export",
        family: Family::Inference,
        params: vec![
            param("model", Kinds::MODEL, Required, "the model (an adapter: merge it first)"),
            param("path", s, Required, "the .gguf file to write"),
            param("quant", s, Str("f16"), "the 2-D weights' type: \"f32\", \"f16\", \"bf16\", \"q8_0\", \"q6_k\", \"q4_k_m\" or \"q4_0\", chosen per tensor as llama-quantize does (norms stay f32; rows that are not whole blocks fall back, with a note)"),
        ],
        returns: s,
        doc: "writes the model as a GGUF file llama.cpp loads (llama metadata, its tokenizer, llama.cpp's tensor names and q/k layout); returns the path",
        example: "export(student, \"student.gguf\", quant=\"q8_0\")",
        run: export,
        pure: false,
        slots: &[],
    }]
}
