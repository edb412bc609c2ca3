//! The token cache: one folder per key under `<root>/tokens/<hex key>/` holding
//! `tokens.u32` (little-endian ids), `mask.u8` (chat sources only: 1 where the token is
//! trained) and `header.json`. The key hashes everything the tokens depend on — the
//! tokenizer's JSON, the files' bytes (not their names or mtimes), the source kind, field,
//! template and framing ids — so an edit anywhere misses and a moved file still hits.
//! Folders are written under a temporary name and renamed into place; reads are mmaps.

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped when the token layout or the document framing changes.
pub(super) const FORMAT: u64 = 1;

const TOKENS: &str = "tokens.u32";
const MASK: &str = "mask.u8";
const HEADER: &str = "header.json";

/// `${KDL_CACHE:-${XDG_CACHE_HOME:-~/.cache}/kdl}`.
pub fn default_cache_root() -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env("KDL_CACHE") {
        return dir;
    }
    let base = env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache"))).unwrap_or_else(std::env::temp_dir);
    base.join("kdl")
}

/// A 128-bit non-cryptographic hash, stable across Rust versions (unlike `DefaultHasher`)
/// so cache keys survive a rebuild. Fields are length-framed so concatenations differ.
#[derive(Clone)]
pub struct KeyHasher {
    a: u64,
    b: u64,
}

impl KeyHasher {
    pub fn new() -> KeyHasher {
        KeyHasher { a: 0x243f_6a88_85a3_08d3 ^ FORMAT, b: 0x1319_8a2e_0370_7344 }
    }

    fn word(&mut self, w: u64) {
        self.a = (self.a ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        self.b = (self.b ^ w.rotate_left(32)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f).rotate_left(31) ^ self.a;
    }

    pub fn field(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(last));
    }

    pub fn finish(&self) -> [u64; 2] {
        fn fmix(mut k: u64) -> u64 {
            k ^= k >> 33;
            k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
            k ^= k >> 33;
            k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            k ^ (k >> 33)
        }
        [fmix(self.a ^ self.b.rotate_left(17)), fmix(self.b.wrapping_add(self.a))]
    }

    pub fn hex(&self) -> String {
        let [x, y] = self.finish();
        format!("{x:016x}{y:016x}")
    }
}

/// Hashes of each file's bytes, computed in parallel.
pub(super) fn hash_files(files: &[&[u8]]) -> Vec<[u64; 2]> {
    files
        .par_iter()
        .map(|bytes| {
            let mut h = KeyHasher::new();
            h.field(bytes);
            h.finish()
        })
        .collect()
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct Header {
    pub format: u64,
    pub tokens: u64,
    pub documents: usize,
    pub files: usize,
    pub masked: bool,
    pub source: String,
}

/// Bytes in memory or mapped from a cache file.
pub(super) enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A token stream as stored: little-endian `u32` ids and an optional byte mask.
pub(super) struct TokenStore {
    ids: Bytes,
    mask: Option<Bytes>,
}

impl TokenStore {
    pub(super) fn owned(ids: &[u32], mask: Option<Vec<u8>>) -> TokenStore {
        TokenStore { ids: Bytes::Owned(ids_to_bytes(ids)), mask: mask.map(Bytes::Owned) }
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len() / 4
    }

    pub(super) fn id(&self, i: usize) -> u32 {
        let b = &self.ids[4 * i..4 * i + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Whether token `i` counts as a target.
    pub(super) fn trained(&self, i: usize) -> bool {
        self.mask.as_ref().map_or(true, |m| m[i] != 0)
    }

    pub(super) fn is_masked(&self) -> bool {
        self.mask.is_some()
    }

    /// Trained tokens in `range`.
    pub(super) fn trained_in(&self, range: std::ops::Range<usize>) -> u64 {
        match &self.mask {
            None => range.len() as u64,
            Some(m) => m[range].iter().filter(|&&b| b != 0).count() as u64,
        }
    }
}

fn ids_to_bytes(ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 4);
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

fn map(path: &Path) -> std::io::Result<Mmap> {
    let file = std::fs::File::open(path)?;
    // Safety: cache folders are written once under a temporary name and never modified
    // after the rename; a concurrent writer replaces the folder rather than the file.
    unsafe { Mmap::map(&file) }
}

/// The cached stream at `dir`, when complete and consistent with its header.
pub(super) fn load(dir: &Path) -> Option<(TokenStore, Header)> {
    let header: Header = serde_json::from_slice(&std::fs::read(dir.join(HEADER)).ok()?).ok()?;
    if header.format != FORMAT {
        return None;
    }
    let ids = map(&dir.join(TOKENS)).ok()?;
    if ids.len() as u64 != header.tokens * 4 {
        return None;
    }
    let mask = if header.masked {
        let m = map(&dir.join(MASK)).ok()?;
        if m.len() as u64 != header.tokens {
            return None;
        }
        Some(Bytes::Mapped(m))
    } else {
        None
    };
    Some((TokenStore { ids: Bytes::Mapped(ids), mask }, header))
}

/// Writes the stream into `dir` atomically: a uniquely named sibling folder, renamed.
/// When another writer got there first, its (identical) folder is kept.
pub(super) fn store(dir: &Path, ids: &[u32], mask: Option<&[u8]>, header: &Header) -> Result<(), String> {
    let parent = dir.parent().ok_or_else(|| format!("{} has no parent folder", dir.display()))?;
    std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("tokens");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = parent.join(format!(".{name}.tmp-{}-{nanos}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], ""));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&tmp)?;
        std::fs::write(tmp.join(TOKENS), ids_to_bytes(ids))?;
        if let Some(m) = mask {
            std::fs::write(tmp.join(MASK), m)?;
        }
        let json = serde_json::to_vec_pretty(header).map_err(std::io::Error::other)?;
        std::fs::write(tmp.join(HEADER), json)?;
        if load(dir).is_some() {
            return Ok(()); // someone else finished first
        }
        let _ = std::fs::remove_dir_all(dir); // a stale or broken entry
        match std::fs::rename(&tmp, dir) {
            Err(_) if load(dir).is_some() => Ok(()),
            done => done,
        }
    };
    let result = write();
    let _ = std::fs::remove_dir_all(&tmp);
    sweep_abandoned(parent);
    result.map_err(|e| format!("cannot write the token cache at {}: {e}", dir.display()))
}

/// Removes temporary folders that writers killed mid-write left behind: any `.*.tmp-*`
/// sibling untouched for an hour (a live writer finishes in seconds).
fn sweep_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > 3600);
        if name.starts_with('.') && name.contains(".tmp-") && old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_frames_fields() {
        let hash = |fields: &[&[u8]]| {
            let mut h = KeyHasher::new();
            fields.iter().for_each(|f| h.field(f));
            h.hex()
        };
        assert_eq!(hash(&[b"ab", b"c"]), hash(&[b"ab", b"c"]));
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
        assert_ne!(hash(&[b"abcdefgh1"]), hash(&[b"abcdefgh2"]));
        assert_ne!(hash(&[b""]), hash(&[b"\0"]));
        assert_eq!(hash(&[b"x"]).len(), 32);
    }
}
