//! The GGUF container (v2 and v3): header, metadata of every value type, tensor index and
//! the aligned data section, over a memory map (or the file read whole when mapping
//! fails). Every length read from the file is checked against what remains, so a damaged
//! file is a one-line error, never a panic or a huge allocation. `dequant` decodes the
//! tensor bytes this hands out; `llama` and `tokenizer` read the metadata.

use super::dequant::GgmlType;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays exist in the format, but nothing real nests deeper than this; a bound
/// keeps a hostile file from recursing the stack away.
const MAX_NESTING: usize = 4;

/// A metadata value, with GGUF's own integer widths.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    /// Any integer that is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            // The shortest decimal that round-trips the f32, so 1e-5 stays 1e-5 rather
            // than becoming 9.99999974e-06 in the spec kdl shows and writes.
            Value::F32(v) => v.to_string().parse().ok(),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short form for messages: a list is its length, a string is cut.
    pub fn brief(&self) -> String {
        match self {
            Value::Str(s) => format!("\"{}\"", shown(s)),
            Value::Array(a) => format!("a list of {}", a.len()),
            other => format!("{other:?}"),
        }
    }
}

/// Text from the file made safe for a one-line message: escaped (a damaged name may hold
/// newlines) and cut short (or megabytes).
pub fn shown(s: &str) -> String {
    const MAX_CHARS: usize = 60;
    let escaped: String = s.escape_debug().collect();
    match escaped.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

/// One entry of the tensor index.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the fastest-varying (columns).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute position of the data in the file, and its length; `None` for a type kdl
    /// cannot size (it is reported only if the tensor is needed).
    pub span: Option<(usize, usize)>,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// The torch shape: ggml's dims slowest-first.
    pub fn torch_shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

/// An opened GGUF file.
pub struct Gguf {
    bytes: Bytes,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Gguf, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: the map is read-only and private to this process; a file truncated under
        // us by another process is the one case memmap cannot guard, as for every reader.
        let bytes = match unsafe { memmap2::Mmap::map(&file) } {
            Ok(map) => Bytes::Mapped(map),
            Err(_) => Bytes::Read(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?),
        };
        let (version, metadata, tensors) = parse(data_of(&bytes)).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Gguf { bytes, version, metadata, tensors })
    }

    pub fn data(&self) -> &[u8] {
        data_of(&self.bytes)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor whose type kdl can size.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Option<&[u8]> {
        info.span.and_then(|(at, len)| self.data().get(at..at.checked_add(len)?))
    }
}

fn data_of(bytes: &Bytes) -> &[u8] {
    match bytes {
        Bytes::Mapped(m) => m,
        Bytes::Read(v) => v,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.at;
        if n > left as u64 {
            return Err(format!("truncated file: {} needs {n} bytes at offset {}, only {left} remain", shown(what), self.at));
        }
        let out = &self.bytes[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.u64(what)?;
        let raw = self.take(len, what)?;
        // Vocabularies occasionally hold invalid UTF-8; keep the entry rather than fail.
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    /// A count of items that each take at least `min_size` bytes, refused when the rest
    /// of the file cannot hold that many (so no allocation trusts a corrupt count).
    fn count(&mut self, min_size: u64, what: &str) -> Result<usize, String> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_size.max(1)) > left {
            return Err(format!("truncated file: {} says {n} entries, only {left} bytes remain", shown(what)));
        }
        Ok(n as usize)
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value, String> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("metadata {}: {b} is not a boolean", shown(key))),
            },
            8 => Value::Str(self.string(key)?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(format!("metadata {}: arrays nested more than {MAX_NESTING} deep", shown(key)));
                }
                let item = self.u32(key)?;
                let n = self.count(value_size(item), key)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            other => return Err(format!("metadata {}: unknown value type {other}", shown(key))),
        })
    }
}

/// The fewest bytes one value of a type can take (for bounding counts).
fn value_size(ty: u32) -> u64 {
    match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => 1,
    }
}

type Parsed = (u32, BTreeMap<String, Value>, Vec<TensorInfo>);

fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let mut c = Cursor { bytes, at: 0 };
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Err("not a GGUF file (it does not start with the bytes GGUF)".into());
    }
    c.at = 4;
    let version = c.u32("the version")?;
    match version {
        2 | 3 => {}
        1 => return Err("GGUF version 1 is not supported (kdl reads versions 2 and 3; re-convert the model with a current llama.cpp)".into()),
        v if (1..=3).contains(&v.swap_bytes()) => return Err("this GGUF file is big-endian, which kdl does not read".into()),
        v => return Err(format!("GGUF version {v} is not supported (kdl reads versions 2 and 3)")),
    }
    // Each tensor entry takes at least 24 bytes, each metadata entry at least 13.
    let n_tensors = c.count(24, "the tensor count")?;
    let n_kv = c.count(13, "the metadata count")?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string("a metadata key")?;
        let ty = c.u32(&key)?;
        let value = c.value(ty, &key, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("metadata key {} appears twice", shown(&key)));
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => return Err(format!("general.alignment {} is not a power of two", v.brief())),
        },
    };
    let mut raw = Vec::with_capacity(n_tensors);
    let mut names = HashSet::new();
    for _ in 0..n_tensors {
        let name = c.string("a tensor name")?;
        let n_dims = c.u32(&name)?;
        if n_dims > MAX_DIMS {
            return Err(format!("tensor {} has {n_dims} dimensions (ggml allows at most {MAX_DIMS})", shown(&name)));
        }
        let dims = (0..n_dims).map(|_| c.u64(&name)).collect::<Result<Vec<u64>, String>>()?;
        let ty = GgmlType(c.u32(&name)?);
        let offset = c.u64(&name)?;
        if !names.insert(name.clone()) {
            return Err(format!("tensor {} appears twice", shown(&name)));
        }
        raw.push((name, dims, ty, offset));
    }
    let data_start = (c.at as u64).div_ceil(alignment).saturating_mul(alignment);
    let file_len = bytes.len() as u64;
    let mut tensors = Vec::with_capacity(raw.len());
    for (name, dims, ty, offset) in raw {
        let shown_name = shown(&name);
        let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let elements = elements.ok_or_else(|| format!("tensor {shown_name} has dimensions {dims:?}, too large to exist"))?;
        let span = match ty.block() {
            None => None,
            Some((block, size)) => {
                if dims.first().is_some_and(|&d| d % block as u64 != 0) {
                    return Err(format!("tensor {shown_name} is {} with rows of {} elements, not whole blocks of {block}", ty.name(), dims[0]));
                }
                let len = (elements / block as u64).saturating_mul(size as u64);
                let at = data_start.saturating_add(offset);
                if at.saturating_add(len) > file_len {
                    return Err(format!("truncated file: tensor {shown_name} needs bytes {at}..{} but the file has {file_len}", at.saturating_add(len)));
                }
                Some((at as usize, len as usize))
            }
        };
        tensors.push(TensorInfo { name, dims, ty, span });
    }
    Ok((version, metadata, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend(version.to_le_bytes());
        b.extend(tensors.to_le_bytes());
        b.extend(kvs.to_le_bytes());
        b
    }

    #[test]
    fn absurd_counts_are_refused_before_allocating() {
        let err = parse(&header(3, u64::MAX, 0)).err().unwrap_or_default();
        assert!(err.contains("truncated file") && err.contains("tensor count"), "{err}");
        let mut b = header(3, 0, 1);
        b.extend(3u64.to_le_bytes());
        b.extend(b"key");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend((1u64 << 60).to_le_bytes());
        let err = parse(&b).err().unwrap_or_default();
        assert!(err.contains("truncated file") && err.contains("key"), "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut b = header(3, 0, 1);
        b.extend(1u64.to_le_bytes());
        b.push(b'k');
        b.extend(9u32.to_le_bytes());
        // Each level: an array whose one item is again an array.
        for _ in 0..100 {
            b.extend(9u32.to_le_bytes());
            b.extend(1u64.to_le_bytes());
        }
        let err = parse(&b).err().unwrap_or_default();
        assert!(err.contains("nested"), "{err}");
    }

    #[test]
    fn versions_and_byte_order_are_named() {
        assert!(parse(&header(1, 0, 0)).err().unwrap_or_default().contains("version 1"));
        assert!(parse(&header(3u32.swap_bytes(), 0, 0)).err().unwrap_or_default().contains("big-endian"));
        assert!(parse(b"PK\x03\x04").err().unwrap_or_default().contains("not a GGUF"));
        assert!(parse(&header(3, 0, 0)).is_ok());
    }
}
