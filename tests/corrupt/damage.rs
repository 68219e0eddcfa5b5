//! What every corrupt-file case shares: small valid caches to start from, the tools that damage a copy
//! of one (its shards' bytes, its manifest, a kds footer rewritten consistently), and the one loop all
//! cases go through — copy, damage, rehash (if asked), open / verify / read, and expect an error of the
//! right kind, at the right stage, naming what it should ([`check`], [`judge`]).
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

pub use crate::cachegen::{Stage, full_check, random_rows, write_cache};
pub use kdcache::format::{Encoding, LogitDtype, RowBatch, RowSpec};
pub use kdcache::{Error, ErrorKind};
pub use serde_json::{Value, json};
pub use xxhash_rust::xxh3::xxh3_64;

// ---------------------------------------------------------------------------------------------------
// fixtures

pub fn spec(dtype: LogitDtype) -> RowSpec {
    RowSpec { classes: 50, k: 8, temperatures: vec![1.0, 2.0], tail_samples: 0, aug_dim: 0, logit_dtype: dtype, tail_logit: true, mixture: false }
}

pub const ROWS: usize = 300;
pub const BLOCK_ROWS: usize = 64;
pub const SHARD_ROWS: usize = 128;

/// A valid cache: C = 50, K = 8, T = [1, 2], 300 rows in blocks of 64 and shards of 128 (3 shards).
pub fn base(enc: Encoding) -> (tempfile::TempDir, RowBatch) {
    base_with(enc, LogitDtype::F16, ROWS, BLOCK_ROWS, SHARD_ROWS, |_| {})
}

pub fn base_with(
    enc: Encoding,
    dtype: LogitDtype,
    rows: usize,
    block: usize,
    shard: usize,
    damage: impl FnOnce(&mut RowBatch),
) -> (tempfile::TempDir, RowBatch) {
    let t = tempfile::tempdir().unwrap();
    let s = spec(dtype);
    let (mut b, prior) = random_rows(&s, rows, 7);
    damage(&mut b);
    write_cache(t.path(), &s, enc, block, shard, &b, Some(&prior));
    (t, b)
}

/// A one-shard cache of 40 rows in 3 blocks, for byte-by-byte sweeps.
pub fn small(enc: Encoding) -> tempfile::TempDir {
    base_with(enc, LogitDtype::F16, 40, 16, 40, |_| {}).0
}

pub const ENCODINGS: [Encoding; 2] = [Encoding::Kds, Encoding::Parquet];

// ---------------------------------------------------------------------------------------------------
// damage

pub fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap()
}

pub fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Value)) {
    let mut m = manifest(dir);
    f(&mut m);
    std::fs::write(dir.join("_manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

pub fn shard(dir: &Path, i: usize) -> PathBuf {
    dir.join(manifest(dir)["shards"][i]["file"].as_str().unwrap())
}

/// Makes the manifest's sizes and checksums match the (damaged) shard files, so that only the shards'
/// own structure and checksums can catch the damage.
pub fn rehash(dir: &Path) {
    edit_manifest(dir, |m| {
        for s in m["shards"].as_array_mut().unwrap() {
            let Ok(bytes) = std::fs::read(dir.join(s["file"].as_str().unwrap())) else { continue };
            s["bytes"] = json!(bytes.len());
            s["xxh3"] = json!(format!("{:016x}", xxh3_64(&bytes)));
            // a rewritten Parquet shard's row groups move: drop their hashes (a cache without them is valid)
            if let Some(o) = s.as_object_mut() {
                o.remove("block_xxh3");
            }
        }
    });
}

/// A fresh copy of the files of the cache at `base`, in RAM where the system has a RAM-backed directory
/// (/dev/shm: the sweeps make thousands of copies), else in its temporary directory.
pub fn copy_of(base: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    for e in std::fs::read_dir(base).unwrap().map(Result::unwrap).filter(|e| e.file_type().unwrap().is_file()) {
        std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
    }
    d
}

pub fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

/// One case's edit of a file's bytes, or of a JSON document (a manifest, a kds footer), in a table of cases.
pub type BytesEdit = Box<dyn Fn(&mut Vec<u8>)>;
pub type JsonEdit = Box<dyn Fn(&mut Value)>;

/// Damage to the bytes of shard `i` of a cache directory.
pub fn shard_bytes(i: usize, f: impl FnOnce(&mut Vec<u8>)) -> impl FnOnce(&Path) {
    move |dir| modify(&shard(dir, i), f)
}

/// Damage to the manifest's JSON.
pub fn manifest_json(f: impl FnOnce(&mut Value)) -> impl FnOnce(&Path) {
    move |dir| edit_manifest(dir, f)
}

/// A kds shard's layout, read from its bytes (trusting them: use on valid shards only).
pub struct KdsLayout {
    pub header: std::ops::Range<usize>,
    pub footer: std::ops::Range<usize>,
    pub footer_json: Value,
}

impl KdsLayout {
    pub fn of(b: &[u8]) -> Self {
        let h = u64::from_le_bytes(b[8..16].try_into().unwrap()) as usize;
        let len = b.len();
        let f = u64::from_le_bytes(b[len - 24..len - 16].try_into().unwrap()) as usize;
        let footer = len - 24 - f..len - 24;
        KdsLayout { header: 16..16 + h, footer_json: serde_json::from_slice(&b[footer.clone()]).unwrap(), footer }
    }

    /// (block, column index, byte range) of every column chunk.
    pub fn chunks(&self) -> Vec<(usize, usize, std::ops::Range<usize>)> {
        let mut out = vec![];
        for (bi, blk) in self.footer_json["blocks"].as_array().unwrap().iter().enumerate() {
            for (ci, c) in blk["columns"].as_array().unwrap().iter().enumerate() {
                let (o, l) = (c["offset"].as_u64().unwrap() as usize, c["len"].as_u64().unwrap() as usize);
                out.push((bi, ci, o..o + l));
            }
        }
        out
    }
}

/// Ends a kds shard (cut at its footer) with footer JSON `fj`, its length, checksum and end magic.
pub fn append_kds_footer(b: &mut Vec<u8>, fj: &Value) {
    let fj = serde_json::to_vec(fj).unwrap();
    b.extend_from_slice(&fj);
    b.extend_from_slice(&(fj.len() as u64).to_le_bytes());
    b.extend_from_slice(&xxh3_64(&fj).to_le_bytes());
    b.extend_from_slice(b"KDSFOOT1");
}

/// Replaces a kds shard's footer JSON, with a correct length and checksum (a "consistent lie").
pub fn rewrite_kds_footer(path: &Path, f: impl FnOnce(&mut Value)) {
    modify(path, |b| {
        let mut lay = KdsLayout::of(b);
        f(&mut lay.footer_json);
        b.truncate(lay.footer.start);
        append_kds_footer(b, &lay.footer_json);
    });
}

/// A `.npy` file made by hand: magic, format `version` (1: a u16 header length, 2: a u32), the header
/// dict `h` padded with spaces and a newline so that the data starts at an offset ≡ `rem` (mod `align`),
/// then `data`.
pub fn npy_bytes(version: u8, h: &str, align: usize, rem: usize, data: &[u8]) -> Vec<u8> {
    let prefix = if version == 1 { 10 } else { 12 };
    let mut h = h.trim_end().to_string();
    while (prefix + h.len() + 1) % align != rem {
        h.push(' ');
    }
    h.push('\n');
    let mut b = vec![0x93, b'N', b'U', b'M', b'P', b'Y', version, 0];
    if version == 1 {
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        b.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    b.extend_from_slice(h.as_bytes());
    b.extend_from_slice(data);
    b
}

// ---------------------------------------------------------------------------------------------------
// expectations

/// What a damaged input must give: an error of one of `kinds`, at `stage` (any stage if None), whose
/// message contains each of `contains`.
#[derive(Debug, Clone)]
pub struct Expect {
    kinds: Vec<ErrorKind>,
    stage: Option<Stage>,
    contains: Vec<String>,
}

impl Expect {
    pub fn err(kind: ErrorKind) -> Self {
        Expect { kinds: vec![kind], stage: None, contains: vec![] }
    }

    pub fn at(mut self, stage: impl Into<Option<Stage>>) -> Self {
        self.stage = stage.into();
        self
    }

    /// Another kind that is also right.
    pub fn or(mut self, kind: ErrorKind) -> Self {
        self.kinds.push(kind);
        self
    }

    pub fn naming<S: ToString>(mut self, parts: impl IntoIterator<Item = S>) -> Self {
        self.contains.extend(parts.into_iter().map(|p| p.to_string()));
        self
    }
}

/// A check's result: what it read, or where it failed and how.
pub type Outcome<T> = Result<T, (Stage, Error)>;

/// A reader that has one stage (`MappedArray::open_npy`, `Manifest::load`, `import`): its failures count as `Open`.
pub fn at_open<T>(r: kdcache::Result<T>) -> Outcome<T> {
    r.map_err(|e| (Stage::Open, e))
}

pub fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// Runs a reader, turning a panic into a test failure that names the case.
pub fn no_panic<T>(case: &str, f: impl FnOnce() -> Outcome<T>) -> Outcome<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| panic!("{case}: the reader panicked: {}", panic_message(p.as_ref())))
}

/// Opens, verifies and reads the cache at `dir` ([`full_check`]); a panic fails the test.
pub fn outcome(dir: &Path, case: &str) -> Outcome<RowBatch> {
    no_panic(case, || full_check(dir))
}

/// Asserts that `got` is the error `want` describes, and returns it.
#[track_caller]
pub fn judge<T>(got: Outcome<T>, want: &Expect, case: &str) -> Error {
    let (st, e) = match got {
        Ok(_) => panic!("{case}: expected a {:?} error, but the input was accepted (opened, verified and read)", want.kinds),
        Err(f) => f,
    };
    assert!(want.kinds.contains(&e.kind()), "{case}: wrong error kind at {st:?} (want {:?}): {e}", want.kinds);
    if let Some(stage) = want.stage {
        assert_eq!(st, stage, "{case}: failed at the wrong stage: {e}");
    }
    let s = e.to_string();
    for p in &want.contains {
        assert!(s.contains(p.as_str()), "{case}: error message lacks {p:?}: {s}");
    }
    e
}

/// Asserts that checking the cache at `dir` fails as `want` says.
#[track_caller]
pub fn expect_err(dir: &Path, want: &Expect, case: &str) -> Error {
    judge(outcome(dir, case), want, case)
}

/// The loop every damaged-cache case goes through: copies the cache at `base`, damages the copy,
/// makes the manifest match the damaged shards when `rehashed`, and expects `want` from checking it.
/// Returns the damaged copy (for further reads) and the error.
#[track_caller]
pub fn check(base: &Path, case: &str, rehashed: bool, damage: impl FnOnce(&Path), want: &Expect) -> (tempfile::TempDir, Error) {
    let d = copy_of(base);
    damage(d.path());
    if rehashed {
        rehash(d.path());
    }
    let e = expect_err(d.path(), want, case);
    (d, e)
}
