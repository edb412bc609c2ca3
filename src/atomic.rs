//! Atomic writes: into a temporary sibling, then a rename, so an interrupted save never
//! leaves a half-written file or folder where a good one was. Used by `save` and by the
//! engine's checkpoints. Every folder also gets `checksums.json` (crate::checksum), so a
//! later read can tell a whole folder from one changed on disk.

use std::io;
use std::path::{Path, PathBuf};

fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Writes `files` (name, bytes) and their manifest into a fresh folder that replaces
/// `dir` in one rename. On any failure (a full disk, a read-only folder) the temporary
/// folder is removed and `dir` is left as it was.
pub fn write_dir(dir: &Path, files: &[(&str, Vec<u8>)]) -> io::Result<()> {
    let tmp = temp_sibling(dir, "tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let written = fill_dir(&tmp, files);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        return written;
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

fn fill_dir(tmp: &Path, files: &[(&str, Vec<u8>)]) -> io::Result<()> {
    std::fs::create_dir_all(tmp)?;
    for (name, bytes) in files {
        std::fs::write(tmp.join(name), bytes)?;
    }
    std::fs::write(tmp.join(crate::checksum::MANIFEST), crate::checksum::manifest(files))?;
    // On disk before the rename makes the folder visible: a crash never leaves a folder
    // whose name promises contents the disk does not hold.
    for (name, _) in files {
        std::fs::File::open(tmp.join(name))?.sync_all()?;
    }
    Ok(())
}

pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path, "tmp");
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}
