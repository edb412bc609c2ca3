//! Writing the GGUF container (v3), the inverse of `reader`: header, metadata, the tensor
//! index, then the data section with every tensor aligned to 32 bytes (GGUF's default, so
//! `general.alignment` is left out). Dimensions are written fastest first, as ggml counts
//! them: a torch `[out, in]` matrix is `ne = [in, out]`.

use super::dequant::GgmlType;
use super::reader::Value;
use std::io::{self, Write};

const ALIGNMENT: u64 = 32;

/// One tensor to write: its GGUF name, torch shape and encoded bytes.
pub struct TensorOut {
    pub name: String,
    pub shape: Vec<u64>,
    pub ty: GgmlType,
    pub data: Vec<u8>,
}

fn type_code(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::Str(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => string(out, s),
        Value::Array(items) => {
            // An empty array still needs an element type; strings are what they hold.
            let elem = items.first().map_or(8, type_code);
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                value(out, item);
            }
        }
    }
}

fn padding(n: u64) -> u64 {
    (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT
}

/// Writes a whole GGUF file: `metadata` in order, then `tensors` in order.
pub fn write(w: &mut impl Write, metadata: &[(String, Value)], tensors: &[TensorOut]) -> io::Result<()> {
    let mut head = Vec::new();
    head.extend_from_slice(b"GGUF");
    head.extend_from_slice(&3u32.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, v) in metadata {
        string(&mut head, key);
        head.extend_from_slice(&type_code(v).to_le_bytes());
        value(&mut head, v);
    }
    let mut offset = 0u64;
    for t in tensors {
        string(&mut head, &t.name);
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in t.shape.iter().rev() {
            head.extend_from_slice(&d.to_le_bytes());
        }
        head.extend_from_slice(&t.ty.0.to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        let n = t.data.len() as u64;
        offset += n + padding(n);
    }
    head.resize(head.len() + padding(head.len() as u64) as usize, 0);
    w.write_all(&head)?;
    for t in tensors {
        w.write_all(&t.data)?;
        w.write_all(&vec![0u8; padding(t.data.len() as u64) as usize])?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::super::reader::Gguf;
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let metadata = vec![
            ("general.architecture".to_string(), Value::Str("llama".into())),
            ("llama.block_count".to_string(), Value::U32(2)),
            ("llama.rope.freq_base".to_string(), Value::F32(100000.0)),
            ("tokenizer.ggml.tokens".to_string(), Value::Array(vec![Value::Str("a".into()), Value::Str("Ġb".into())])),
            ("tokenizer.ggml.add_bos_token".to_string(), Value::Bool(false)),
        ];
        let values: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let tensors = vec![
            TensorOut { name: "a".into(), shape: vec![2, 3], ty: GgmlType::F32, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() },
            TensorOut { name: "b".into(), shape: vec![5], ty: GgmlType::F32, data: vec![0; 20] },
        ];
        let dir = std::env::temp_dir().join(format!("kdl-gguf-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.gguf");
        write(&mut std::fs::File::create(&path).unwrap(), &metadata, &tensors).unwrap();
        let g = Gguf::open(&path).unwrap();
        for (k, v) in &metadata {
            assert_eq!(g.get(k), Some(v), "{k}");
        }
        let a = g.tensors.iter().find(|t| t.name == "a").unwrap();
        assert_eq!(a.torch_shape(), vec![2, 3]);
        assert_eq!(g.tensor_bytes(a).unwrap(), &tensors[0].data[..]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
