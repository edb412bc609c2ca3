//! Atomic writes: into a temporary sibling, then a rename, so an interrupted save never
//! leaves a half-written file or folder where a good one was. Used by `save` and by the
//! engine's checkpoints.

use std::io;
use std::path::{Path, PathBuf};

fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Writes `files` (name, bytes) into a fresh folder that replaces `dir` in one rename.
pub fn write_dir(dir: &Path, files: &[(&str, Vec<u8>)]) -> io::Result<()> {
    let tmp = temp_sibling(dir, "tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (name, bytes) in files {
        std::fs::write(tmp.join(name), bytes)?;
    }
    if dir.exists() {
        let old = temp_sibling(dir, "old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dir, &old)?;
        std::fs::rename(&tmp, dir)?;
        let _ = std::fs::remove_dir_all(old);
    } else {
        std::fs::rename(&tmp, dir)?;
    }
    Ok(())
}

pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path, "tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
