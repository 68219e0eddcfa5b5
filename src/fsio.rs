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
