//! Shared by the fuzz targets: the fixed cache shape the shard targets read with ([`shape`]), a scratch
//! file per process, and the checks every accepted input goes through.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kdcache::format::{RowBatch, RowSpec};
use kdcache::{Error, ErrorKind};

pub mod shape;
pub use shape::{BLOCK_ROWS, ROWS, mixture_spec, spec, specs};

/// Writes `data` to `name` in this process's scratch directory and returns its path.
pub fn input_file(name: &str, data: &[u8]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::Builder::new().prefix("kdcache-fuzz-").tempdir().expect("scratch dir"));
    let p = dir.path().join(name);
    std::fs::write(&p, data).expect("write fuzz input");
    p
}

/// The kinds a reader may answer hostile bytes with; anything else (Internal above all) is a bug.
#[track_caller]
pub fn check_kind(e: &Error, allowed: &[ErrorKind], path: &Path) {
    assert!(allowed.contains(&e.kind()), "unexpected error kind {:?} for {}: {e}", e.kind(), path.display());
}

/// Every row of `b` through `verify`'s row checker, one checker for the block as `verify` uses it (a
/// hostile row must give Err, not a panic).
pub fn check_rows(b: &RowBatch, spec: &RowSpec) {
    b.check_lengths().expect("a decoded block has consistent column lengths");
    let mut checker = kdcache::format::rows::RowChecker::new(spec);
    for i in 0..b.len() {
        let _ = checker.check(b.get(i));
    }
}
