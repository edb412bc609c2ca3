//! Checksums of the folders kdl writes: every folder written through `atomic::write_dir`
//! (checkpoints, `save`, adapters) carries `checksums.json`, the CRC-32 and size of each
//! of its files, and loading or resuming verifies it. A byte flipped on disk is then a
//! one-line error naming the file, not weights that load and turn the loss into NaN.

use serde_json::{json, Value};
use std::path::Path;

pub const MANIFEST: &str = "checksums.json";

fn crc32(bytes: &[u8]) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    format!("{:08x}", h.finalize())
}

/// The manifest of `files` (name, bytes), as written beside them.
pub fn manifest(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let entries: serde_json::Map<String, Value> = files.iter().map(|(name, bytes)| (name.to_string(), json!({"bytes": bytes.len(), "crc32": crc32(bytes)}))).collect();
    serde_json::to_vec_pretty(&json!({"algorithm": "crc32", "files": entries})).unwrap_or_default()
}

/// What verifying a folder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// Every file the manifest lists is there with its size and checksum.
    Verified,
    /// No manifest: a folder kdl did not write (e.g. from transformers); nothing to check.
    Unchecked,
}

/// Checks every file `dir`'s manifest lists; the error is one line naming the file.
pub fn verify(dir: &Path) -> Result<Integrity, String> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Integrity::Unchecked),
        Err(e) => return Err(format!("{}: cannot read ({e})", path.display())),
    };
    let damaged = || format!("{}: damaged (not the manifest kdl wrote); the folder cannot be trusted", path.display());
    let json: Value = serde_json::from_slice(&text).map_err(|_| damaged())?;
    let files = json.get("files").and_then(Value::as_object).ok_or_else(damaged)?;
    for (name, want) in files {
        if name.contains('/') || name.contains("..") {
            return Err(damaged());
        }
        let (Some(size), Some(sum)) = (want.get("bytes").and_then(Value::as_u64), want.get("crc32").and_then(Value::as_str)) else {
            return Err(damaged());
        };
        let file = dir.join(name);
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: listed in {MANIFEST} but cannot be read ({e})", file.display()))?;
        if bytes.len() as u64 != size {
            return Err(format!("{}: {} bytes, but {size} were written (truncated or changed since)", file.display(), bytes.len()));
        }
        if crc32(&bytes) != sum {
            return Err(format!("{}: its contents changed since it was written (checksum {} ≠ {sum})", file.display(), crc32(&bytes)));
        }
    }
    Ok(Integrity::Verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_or_a_truncation_names_the_file() {
        let dir = std::env::temp_dir().join(format!("kdl-checksum-{}", std::process::id()));
        let files = vec![("a.bin", vec![1u8, 2, 3, 4]), ("b.json", b"{}".to_vec())];
        crate::atomic::write_dir(&dir, &files).unwrap();
        assert_eq!(verify(&dir), Ok(Integrity::Verified));
        std::fs::write(dir.join("a.bin"), [1u8, 2, 3, 5]).unwrap();
        let err = verify(&dir).unwrap_err();
        assert!(err.contains("a.bin") && err.contains("changed"), "{err}");
        std::fs::write(dir.join("a.bin"), [1u8, 2]).unwrap();
        assert!(verify(&dir).unwrap_err().contains("truncated"));
        std::fs::remove_file(dir.join(MANIFEST)).unwrap();
        assert_eq!(verify(&dir), Ok(Integrity::Unchecked));
        std::fs::remove_dir_all(&dir).ok();
    }
}
