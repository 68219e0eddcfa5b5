//! File safety, in one place: every file kdcache publishes (manifests, shards, checkpoints, exported
//! students, run summaries, reports, generated data) is written to a temporary name, fsynced, renamed
//! over the final name and its directory fsynced, so a crash leaves the old file or the new one, never a
//! torn one. Also the whole-file XXH3 and a writer that hashes and counts what it writes.
use std::io::Write;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use crate::error::{IoContext, Result};

/// `path` with `.tmp` appended: where a file is written before it is published.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Makes a rename in `dir` durable (best effort: some filesystems refuse to sync a directory).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
        let _ = d.sync_all();
    }
}

/// Publishes a finished temporary file: fsync it, rename it over `path`, fsync the directory.
pub fn publish(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::OpenOptions::new().read(true).open(tmp).and_then(|f| f.sync_all()).ctx(tmp)?;
    std::fs::rename(tmp, path).ctx(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp).ctx(&tmp)?;
        f.write_all(bytes).ctx(&tmp)?;
        f.sync_all().ctx(&tmp)?;
    }
    std::fs::rename(&tmp, path).ctx(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// XXH3-64 of a whole file (memory-mapped).
pub fn file_xxh3(path: &Path) -> Result<u64> {
    let f = std::fs::File::open(path).ctx(path)?;
    let len = f.metadata().ctx(path)?.len();
    if len == 0 {
        return Ok(xxhash_rust::xxh3::xxh3_64(&[]));
    }
    // SAFETY: a read-only map; kdcache never writes a file it has published, and a file changed under
    // the map by someone else is the same hazard as in KdsShard::open.
    let map = unsafe { memmap2::Mmap::map(&f) }.ctx(path)?;
    Ok(xxhash_rust::xxh3::xxh3_64(&map))
}

/// A writer that hashes (XXH3-64) and counts every byte it passes on: a shard's checksum and size come
/// out of the one pass that writes it.
pub struct HashWriter<W: Write> {
    pub w: W,
    h: Xxh3,
    /// Bytes written so far (the offset of the next byte).
    pub n: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(w: W) -> Self {
        HashWriter { w, h: Xxh3::new(), n: 0 }
    }
    /// The hash of everything written so far.
    pub fn digest(&self) -> u64 {
        self.h.digest()
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(b)?;
        self.h.update(&b[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// The lock file of a directory that a command is writing (see [`DirLock`]).
pub const LOCK_FILE: &str = ".kdcache.lock";

/// An exclusive lock on a directory while a command writes it (`train` on its run directory; `cache`,
/// `import` and `merge` on their output), so that a second writer is refused, with the holder named,
/// instead of interleaving with the first. It is a `flock` on `DIR/.kdcache.lock`, which the kernel
/// drops when the process ends however it ends (`kill -9` included, so no stale lock blocks a rerun);
/// the file names the holder (pid and command) and is removed when the lock is released.
pub struct DirLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl DirLock {
    /// Locks `dir` (which must exist) for `command`, or fails with one line naming the holder.
    pub fn acquire(dir: &Path, command: &str) -> Result<DirLock> {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        let path = dir.join(LOCK_FILE);
        loop {
            let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).ctx(&path)?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::WouldBlock {
                    return Err(crate::Error::io(&path, err));
                }
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = if holder.trim().is_empty() { "another kdcache process".to_string() } else { holder.trim().to_string() };
                return Err(crate::Error::invalid(format!("{} is in use by {holder}: wait for it to end, or choose another directory", dir.display())));
            }
            // a holder that released the lock removed the file after this open: lock the new one instead
            let same = match (file.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            file.set_len(0).ctx(&path)?;
            writeln!(file, "pid {} (kdcache {command})", std::process::id()).ctx(&path)?;
            return Ok(DirLock { path, _file: file });
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // removed while still locked; the descriptor closes (and unlocks) right after
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_is_refused_until_released() {
        let t = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(t.path(), "train").unwrap();
        let e = DirLock::acquire(t.path(), "train").err().expect("a second lock is refused").to_string();
        assert!(e.contains(&format!("pid {} (kdcache train)", std::process::id())), "{e}");
        drop(a);
        assert!(!t.path().join(LOCK_FILE).exists(), "the lock file stays after release");
        let _b = DirLock::acquire(t.path(), "cache").unwrap();
    }
}
