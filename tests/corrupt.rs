//! Damaged caches and input files: every reader must answer with an error of the right kind (naming the
//! file, and the block or row where known), never with a panic or with wrong rows.
//!
//! Cases are derived at run time from small valid caches; a few of them are also kept as a static
//! corpus in `tests/corpus/` (listed, with their expected errors, in `tests/corpus/README.md`) that
//! `corpus_regression` replays. Regenerate it with
//! `KDCACHE_WRITE_CORPUS=1 cargo test --no-default-features --test corrupt -- --ignored write_corpus`.
mod cachegen;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use cachegen::{Stage, copy_dir, full_check, random_rows, write_cache};
use kdcache::data::npy::{self, Npy, NpyDtype};
use kdcache::format::{CacheReader, Encoding, LogitDtype, RowBatch, RowSpec};
use kdcache::{Error, ErrorKind};
use serde_json::{Value, json};
use xxhash_rust::xxh3::xxh3_64;

// ---------------------------------------------------------------------------------------------------
// fixtures

fn spec(dtype: LogitDtype) -> RowSpec {
    RowSpec { classes: 50, k: 8, temperatures: vec![1.0, 2.0], tail_samples: 0, aug_dim: 0, logit_dtype: dtype }
}

const ROWS: usize = 300;
const BLOCK_ROWS: usize = 64;
const SHARD_ROWS: usize = 128;

/// A valid cache: C = 50, K = 8, T = [1, 2], 300 rows in blocks of 64 and shards of 128 (3 shards).
fn base(enc: Encoding) -> (tempfile::TempDir, RowBatch) {
    base_with(enc, LogitDtype::F16, ROWS, BLOCK_ROWS, SHARD_ROWS, |_| {})
}

fn base_with(enc: Encoding, dtype: LogitDtype, rows: usize, block: usize, shard: usize, damage: impl FnOnce(&mut RowBatch)) -> (tempfile::TempDir, RowBatch) {
    let t = tempfile::tempdir().unwrap();
    let s = spec(dtype);
    let (mut b, prior) = random_rows(&s, rows, 7);
    damage(&mut b);
    write_cache(t.path(), &s, enc, block, shard, &b, Some(&prior));
    (t, b)
}

/// A one-shard cache of 40 rows in 3 blocks, for byte-by-byte sweeps.
fn small(enc: Encoding) -> tempfile::TempDir {
    base_with(enc, LogitDtype::F16, 40, 16, 40, |_| {}).0
}

const ENCODINGS: [Encoding; 2] = [Encoding::Kds, Encoding::Parquet];

// ---------------------------------------------------------------------------------------------------
// damage helpers

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn edit_manifest(dir: &Path, f: impl FnOnce(&mut Value)) {
    let mut m = manifest(dir);
    f(&mut m);
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn shard(dir: &Path, i: usize) -> PathBuf {
    dir.join(manifest(dir)["shards"][i]["file"].as_str().unwrap())
}

/// Makes the manifest's sizes and checksums match the (damaged) shard files, so that only the shards'
/// own structure and checksums can catch the damage.
fn rehash(dir: &Path) {
    edit_manifest(dir, |m| {
        for s in m["shards"].as_array_mut().unwrap() {
            let Ok(bytes) = std::fs::read(dir.join(s["file"].as_str().unwrap())) else { continue };
            s["bytes"] = json!(bytes.len());
            s["xxh3"] = json!(format!("{:016x}", xxh3_64(&bytes)));
        }
    });
}

fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

/// A kds shard's layout, read from its bytes (trusting them: use on valid shards only).
struct KdsLayout {
    header: std::ops::Range<usize>,
    footer: std::ops::Range<usize>,
    footer_json: Value,
}

impl KdsLayout {
    fn of(b: &[u8]) -> Self {
        let h = u64::from_le_bytes(b[8..16].try_into().unwrap()) as usize;
        let len = b.len();
        let f = u64::from_le_bytes(b[len - 24..len - 16].try_into().unwrap()) as usize;
        let footer = len - 24 - f..len - 24;
        KdsLayout { header: 16..16 + h, footer_json: serde_json::from_slice(&b[footer.clone()]).unwrap(), footer }
    }
    /// (block, column index, byte range) of every column chunk.
    fn chunks(&self) -> Vec<(usize, usize, std::ops::Range<usize>)> {
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

/// Replaces a kds shard's footer JSON, with a correct length and checksum (a "consistent lie").
fn rewrite_kds_footer(path: &Path, f: impl FnOnce(&mut Value)) {
    modify(path, |b| {
        let mut lay = KdsLayout::of(b);
        f(&mut lay.footer_json);
        let fj = serde_json::to_vec(&lay.footer_json).unwrap();
        b.truncate(lay.footer.start);
        b.extend_from_slice(&fj);
        b.extend_from_slice(&(fj.len() as u64).to_le_bytes());
        b.extend_from_slice(&xxh3_64(&fj).to_le_bytes());
        b.extend_from_slice(b"KDSFOOT1");
    });
}

// ---------------------------------------------------------------------------------------------------
// expectations

/// Runs `full_check` on `dir`, turning a panic into a test failure that names the case.
fn outcome(dir: &Path, case: &str) -> Result<RowBatch, (Stage, Error)> {
    match catch_unwind(AssertUnwindSafe(|| full_check(dir))) {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            panic!("{case}: the reader panicked: {msg}");
        }
    }
}

/// Asserts that checking `dir` fails at `stage` (any stage if None) with an error of `kind`.
#[track_caller]
fn expect_err(dir: &Path, stage: Option<Stage>, kind: ErrorKind, case: &str) -> Error {
    match outcome(dir, case) {
        Ok(_) => panic!("{case}: expected a {kind:?} error, but the cache opened, verified and read"),
        Err((st, e)) => {
            assert_eq!(e.kind(), kind, "{case}: wrong error kind at {st:?}: {e}");
            if let Some(want) = stage {
                assert_eq!(st, want, "{case}: failed at the wrong stage: {e}");
            }
            e
        }
    }
}

#[track_caller]
fn expect_msg(e: &Error, parts: &[&str], case: &str) {
    let s = e.to_string();
    for p in parts {
        assert!(s.contains(p), "{case}: error message lacks {p:?}: {s}");
    }
}

// ---------------------------------------------------------------------------------------------------
// tests

#[test]
fn valid_caches_open_verify_and_read() {
    for enc in ENCODINGS {
        for dtype in [LogitDtype::F16, LogitDtype::Bf16, LogitDtype::F32] {
            let (t, rows) = base_with(enc, dtype, ROWS, BLOCK_ROWS, SHARD_ROWS, |_| {});
            let got = outcome(t.path(), "valid").unwrap_or_else(|(st, e)| panic!("{enc:?} {dtype:?}: valid cache failed at {st:?}: {e}"));
            assert_eq!(got, rows, "{enc:?} {dtype:?}");
            assert_eq!(manifest(t.path())["shards"].as_array().unwrap().len(), 3);
        }
    }
}

#[test]
fn truncated_shards() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        let len = std::fs::metadata(shard(t.path(), 1)).unwrap().len() as usize;
        let mut cuts = vec![0, 1, 8, 15, 16, 39, len / 2, len - 100, len - 30, len - 24, len - 20, len - 8, len - 4, len - 1];
        if enc == Encoding::Kds {
            let lay = KdsLayout::of(&std::fs::read(shard(t.path(), 1)).unwrap());
            cuts.extend([lay.header.start + 3, lay.header.end - 1, lay.header.end + 5, lay.footer.start, (lay.footer.start + lay.footer.end) / 2, lay.footer.end - 1]);
        }
        for cut in cuts {
            for rehashed in [false, true] {
                let d = copy_dir(t.path());
                modify(&shard(d.path(), 1), |b| b.truncate(cut));
                if rehashed {
                    rehash(d.path());
                }
                let case = format!("{enc:?} shard 1 cut to {cut} of {len} bytes (rehashed {rehashed})");
                let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, &case);
                expect_msg(&e, &["shard-00001"], &case);
            }
        }
    }
}

#[test]
fn kds_flipped_chunk_byte_fails_its_checksum() {
    let (t, _) = base(Encoding::Kds);
    // without fixing the manifest: verify's whole-file checksum catches it
    let d = copy_dir(t.path());
    let lay = KdsLayout::of(&std::fs::read(shard(d.path(), 0)).unwrap());
    let first = lay.chunks()[0].2.clone();
    modify(&shard(d.path(), 0), |b| b[first.start + first.len() / 2] ^= 0x10);
    let e = expect_err(d.path(), Some(Stage::Verify), ErrorKind::Corrupt, "kds flipped chunk byte");
    expect_msg(&e, &["shard-00000.kds", "checksum"], "kds flipped chunk byte");

    // with the manifest fixed: each chunk's own checksum catches it, naming block and column
    let lay = KdsLayout::of(&std::fs::read(shard(t.path(), 1)).unwrap());
    let names = ["row", "view", "label", "topk_idx", "topk_logit", "lse", "log_tail"];
    for (bi, ci, r) in lay.chunks() {
        for pos in [r.start, r.start + r.len() / 2, r.end - 1] {
            let d = copy_dir(t.path());
            modify(&shard(d.path(), 1), |b| b[pos] ^= 0x01);
            rehash(d.path());
            let case = format!("kds shard 1 block {bi} column {} byte {pos} flipped", names[ci]);
            let e = expect_err(d.path(), Some(Stage::Verify), ErrorKind::Corrupt, &case);
            expect_msg(&e, &["shard-00001.kds", &format!("block {bi}, column {}", names[ci]), "checksum mismatch"], &case);
            // reading the rows fails the same way
            let r = CacheReader::open(d.path()).unwrap();
            let first = 128 + (bi * 64) as u64;
            let e = r.get_rows(first..first + 1).expect_err("get_rows of a damaged block");
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{case}: {e}");
            let r = std::sync::Arc::new(r);
            let errs: Vec<Error> = r.batches(kdcache::format::Order::Sequential, 2).filter_map(|b| b.err()).collect();
            assert_eq!(errs.len(), 1, "{case}: exactly the damaged block fails");
            assert_eq!(errs[0].kind(), ErrorKind::Corrupt);
        }
    }
}

#[test]
fn kds_consistent_lies_in_the_footer_are_caught() {
    let (t, _) = base(Encoding::Kds);
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Stage, Edit)> = vec![
        ("raw_len off by one", Stage::Open, Box::new(|f| {
            let v = f["blocks"][0]["columns"][3]["raw_len"].as_u64().unwrap();
            f["blocks"][0]["columns"][3]["raw_len"] = json!(v + 1);
        })),
        ("block of 0 rows", Stage::Open, Box::new(|f| f["blocks"][1]["rows"] = json!(0))),
        ("block larger than block_rows", Stage::Open, Box::new(|f| f["blocks"][0]["rows"] = json!(65))),
        ("a block dropped", Stage::Open, Box::new(|f| {
            f["blocks"].as_array_mut().unwrap().pop();
        })),
        ("chunk offset moved", Stage::Open, Box::new(|f| {
            let v = f["blocks"][0]["columns"][1]["offset"].as_u64().unwrap();
            f["blocks"][0]["columns"][1]["offset"] = json!(v + 1);
        })),
        ("chunk length grown", Stage::Open, Box::new(|f| {
            let v = f["blocks"][1]["columns"][6]["len"].as_u64().unwrap();
            f["blocks"][1]["columns"][6]["len"] = json!(v + 1);
        })),
        ("chunks swapped", Stage::Open, Box::new(|f| {
            let cols = f["blocks"][0]["columns"].as_array_mut().unwrap();
            cols.swap(0, 1);
        })),
        ("a column missing", Stage::Open, Box::new(|f| {
            f["blocks"][0]["columns"].as_array_mut().unwrap().pop();
        })),
        ("huge offset", Stage::Open, Box::new(|f| f["blocks"][0]["columns"][0]["offset"] = json!(u64::MAX))),
        ("huge length", Stage::Open, Box::new(|f| f["blocks"][0]["columns"][0]["len"] = json!(u64::MAX))),
        ("not a footer", Stage::Open, Box::new(|f| *f = json!({"blocks": "no"}))),
        ("wrong chunk checksum", Stage::Verify, Box::new(|f| {
            let v = f["blocks"][1]["columns"][4]["xxh3"].as_u64().unwrap();
            f["blocks"][1]["columns"][4]["xxh3"] = json!(v ^ 1);
        })),
    ];
    for (name, stage, edit) in &cases {
        let d = copy_dir(t.path());
        rewrite_kds_footer(&shard(d.path(), 0), edit);
        rehash(d.path());
        let e = expect_err(d.path(), Some(*stage), ErrorKind::Corrupt, name);
        expect_msg(&e, &["shard-00000.kds"], name);
    }
}

#[test]
fn kds_garbage_frame_with_a_matching_checksum() {
    // a chunk replaced by bytes that are not zstd, or by a frame of the wrong length, with the footer
    // (and manifest) updated to match: decoding must fail cleanly
    let (t, _) = base(Encoding::Kds);
    let make = |payload: Vec<u8>, case: &str| {
        let d = copy_dir(t.path());
        let p = shard(d.path(), 2);
        let b = std::fs::read(&p).unwrap();
        let lay = KdsLayout::of(&b);
        let (_, _, r) = lay.chunks().last().unwrap().clone(); // the last chunk sits just before the footer
        let mut fj = lay.footer_json.clone();
        let last = fj["blocks"].as_array().unwrap().len() - 1;
        let col = fj["blocks"][last]["columns"].as_array().unwrap().len() - 1;
        fj["blocks"][last]["columns"][col]["len"] = json!(payload.len());
        fj["blocks"][last]["columns"][col]["xxh3"] = json!(xxh3_64(&payload));
        let fbytes = serde_json::to_vec(&fj).unwrap();
        let mut out = b[..r.start].to_vec();
        out.extend_from_slice(&payload);
        out.extend_from_slice(&fbytes);
        out.extend_from_slice(&(fbytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&xxh3_64(&fbytes).to_le_bytes());
        out.extend_from_slice(b"KDSFOOT1");
        std::fs::write(&p, out).unwrap();
        rehash(d.path());
        let e = expect_err(d.path(), Some(Stage::Verify), ErrorKind::Corrupt, case);
        expect_msg(&e, &["shard-00002.kds", "column log_tail"], case);
    };
    let raw = 44 * 2 * 4; // the last block: 44 rows of T = 2 f32 values
    make(b"definitely not zstd".to_vec(), "not zstd");
    make(zstd::bulk::compress(&vec![0u8; raw - 4], 3).unwrap(), "frame too short");
    make(zstd::bulk::compress(&vec![0u8; raw + 4], 3).unwrap(), "frame too long");
    make(vec![], "empty chunk");
}

#[test]
fn parquet_flipped_byte_fails_the_file_checksum() {
    let (t, _) = base(Encoding::Parquet);
    for frac in [0.1, 0.3, 0.5, 0.9] {
        let d = copy_dir(t.path());
        let p = shard(d.path(), 1);
        modify(&p, |b| {
            let i = (b.len() as f64 * frac) as usize;
            b[i] ^= 0x04;
        });
        let case = format!("parquet byte at {frac} flipped");
        // the damage may break the file's structure (open) or only its content (verify's checksum)
        let e = expect_err(d.path(), None, ErrorKind::Corrupt, &case);
        expect_msg(&e, &["shard-00001.parquet"], &case);
    }
}

/// The kds header bytes that hold `"block_rows":N`'s value: see `kds_header_block_rows_must_match_manifest`.
fn block_rows_value(b: &[u8], header: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    let key = b"\"block_rows\":";
    let at = header.start + b[header.clone()].windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let end = (at..header.end).find(|&i| !b[i].is_ascii_digit()).unwrap();
    at..end
}

#[test]
fn kds_every_byte_flip_is_caught() {
    // flip each byte of a small shard (manifest rehashed, so the shard itself must catch it)
    let t = small(Encoding::Kds);
    let b = std::fs::read(shard(t.path(), 0)).unwrap();
    let lay = KdsLayout::of(&b);
    let _ = &lay;
    let mut caught = 0;
    let d = copy_dir(t.path());
    let p = shard(d.path(), 0);
    for pos in 0..b.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = b.clone();
            bad[pos] ^= mask;
            std::fs::write(&p, &bad).unwrap();
            rehash(d.path());
            let case = format!("kds byte {pos} of {} ^ {mask:#x}", b.len());
            let e = match outcome(d.path(), &case) {
                Ok(_) => panic!("{case}: not caught"),
                Err((_, e)) => e,
            };
            // a flip in the version field can make it a newer version
            if (4..8).contains(&pos) {
                assert!(matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Version), "{case}: {e}");
            } else {
                assert_eq!(e.kind(), ErrorKind::Corrupt, "{case}: {e}");
            }
            caught += 1;
        }
    }
    assert!(caught > 1000);
}

#[test]
fn kds_header_and_version_bytes() {
    let (t, _) = base(Encoding::Kds);
    let cases: Vec<(&str, ErrorKind, Box<dyn Fn(&mut Vec<u8>)>)> = vec![
        ("bad magic", ErrorKind::Corrupt, Box::new(|b| b[0] = b'X')),
        ("version 2", ErrorKind::Version, Box::new(|b| b[4..8].copy_from_slice(&2u32.to_le_bytes()))),
        ("version 0", ErrorKind::Corrupt, Box::new(|b| b[4..8].copy_from_slice(&0u32.to_le_bytes()))),
        ("header length huge", ErrorKind::Corrupt, Box::new(|b| b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()))),
        ("header length beyond the file", ErrorKind::Corrupt, Box::new(|b| {
            let n = b.len() as u64;
            b[8..16].copy_from_slice(&n.to_le_bytes())
        })),
        ("header length short by one", ErrorKind::Corrupt, Box::new(|b| {
            let h = u64::from_le_bytes(b[8..16].try_into().unwrap());
            b[8..16].copy_from_slice(&(h - 1).to_le_bytes())
        })),
        ("header says f32", ErrorKind::Corrupt, Box::new(|b| {
            let i = b.windows(5).position(|w| w == b"\"f16\"").unwrap();
            b[i + 2..i + 4].copy_from_slice(b"32");
        })),
        ("header says k=9", ErrorKind::Corrupt, Box::new(|b| {
            let i = b.windows(5).position(|w| w == b"\"k\":8").unwrap();
            b[i + 4] = b'9';
        })),
        ("header column renamed", ErrorKind::Corrupt, Box::new(|b| {
            let i = b.windows(5).position(|w| w == b"\"lse\"").unwrap();
            b[i + 1] = b'L';
        })),
        ("header not UTF-8", ErrorKind::Corrupt, Box::new(|b| b[17] = 0xff)),
    ];
    for (name, kind, f) in &cases {
        for rehashed in [false, true] {
            let d = copy_dir(t.path());
            modify(&shard(d.path(), 0), f);
            if rehashed {
                rehash(d.path());
            }
            let case = format!("{name} (rehashed {rehashed})");
            let e = expect_err(d.path(), Some(Stage::Open), *kind, &case);
            expect_msg(&e, &["shard-00000.kds"], &case);
            if *kind == ErrorKind::Version {
                expect_msg(&e, &["version 2", "(1)"], &case);
            }
        }
    }
    // a flipped header byte without fixing the manifest is caught by open or by verify
    let b = std::fs::read(shard(t.path(), 0)).unwrap();
    let lay = KdsLayout::of(&b);
    for pos in lay.header.clone() {
        let d = copy_dir(t.path());
        modify(&shard(d.path(), 0), |b| b[pos] ^= 0x01);
        expect_err(d.path(), None, ErrorKind::Corrupt, &format!("header byte {pos} flipped"));
    }
}

/// FORMAT.md: readers must reject header JSON that "disagrees with the manifest". Regression: the kds
/// reader took `block_rows` from the shard header without comparing it with the manifest's, so a shard
/// whose header (and blocks) used another block size was accepted (now checked in `CacheReader::open`).
#[test]
fn kds_header_block_rows_must_match_manifest() {
    let (t, _) = base(Encoding::Kds);
    let d = copy_dir(t.path());
    modify(&shard(d.path(), 0), |b| {
        let lay = KdsLayout::of(b);
        let r = block_rows_value(b, &lay.header);
        assert_eq!(&b[r.clone()], b"64");
        b[r.start + 1] = b'5'; // 64 -> 65
    });
    rehash(d.path());
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "header block_rows 65, manifest 64");
}

#[test]
fn kds_flipped_footer_and_trailer_bytes() {
    let (t, _) = base(Encoding::Kds);
    let b = std::fs::read(shard(t.path(), 2)).unwrap();
    let lay = KdsLayout::of(&b);
    for pos in lay.footer.start..b.len() {
        let d = copy_dir(t.path());
        modify(&shard(d.path(), 2), |b| b[pos] ^= 0x20);
        rehash(d.path());
        let case = format!("kds footer/trailer byte {pos} of {} flipped", b.len());
        let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, &case);
        expect_msg(&e, &["shard-00002.kds"], &case);
    }
}

#[test]
fn trailing_bytes() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        let b = std::fs::read(shard(t.path(), 0)).unwrap();
        let tails: Vec<(&str, Vec<u8>)> = vec![
            ("one zero byte", vec![0]),
            ("4 KiB of zeros", vec![0; 4096]),
            ("the last 24 bytes again", b[b.len() - 24..].to_vec()),
            ("the last 8 bytes again", b[b.len() - 8..].to_vec()),
            ("the magic again", if enc == Encoding::Kds { b"KDSFOOT1".to_vec() } else { b"PAR1".to_vec() }),
        ];
        for (name, tail) in &tails {
            for rehashed in [false, true] {
                let d = copy_dir(t.path());
                modify(&shard(d.path(), 0), |b| b.extend_from_slice(tail));
                if rehashed {
                    rehash(d.path());
                }
                let case = format!("{enc:?}: {name} appended (rehashed {rehashed})");
                // kds refuses bytes after the end magic when opening; a Parquet file is located from
                // its end, so the appended bytes break it too, or at least verify's size check
                let stage = if enc == Encoding::Kds || rehashed { Some(Stage::Open) } else { None };
                let e = expect_err(d.path(), stage, ErrorKind::Corrupt, &case);
                expect_msg(&e, &["shard-00000"], &case);
            }
        }
    }
}

// Damaged Parquet shards used to panic inside the parquet crate (60.1.0), reached through
// `ParquetShard::read_block` / `open`, so `verify` panicked instead of reporting a corrupt shard:
// - `encodings/decoding/byte_stream_split_decoder.rs:67`, "index out of bounds": the BYTE_STREAM_SPLIT
//   decoder (kdcache's encoding for `topk_idx` and `topk_logit`) indexes past its page data when a
//   damaged page or page header declares more values than the data holds;
// - `file/metadata/mod.rs:1043`, "column start and length should not be negative":
//   `ColumnChunkMetaData::byte_range` on a damaged column chunk offset or length.
// src/format/parquet.rs now runs the parquet crate under `catch_unwind` and reports such panics as
// Corrupt; the sweeps below fail on any panic that escapes, and name where it came from.
thread_local!(static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) });

/// Runs `f`, returning a panic as (location, message); the location is captured by a panic hook.
fn catch_site<R>(f: impl FnOnce() -> R) -> Result<R, (String, String)> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let loc = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            PANIC_AT.with(|p| *p.borrow_mut() = Some(loc));
            prev(info);
        }));
    });
    PANIC_AT.with(|p| p.borrow_mut().take());
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        (PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default(), msg)
    })
}

/// Opens one Parquet shard and decodes and checks every row, on the calling thread.
fn parquet_shard_check(path: &Path, spec: &RowSpec, rows: u64, block_rows: usize) -> kdcache::Result<()> {
    let s = kdcache::format::parquet::ParquetShard::open(path, spec, rows, block_rows)?;
    for b in 0..s.num_blocks() {
        let batch = s.read_block(b)?;
        for i in 0..batch.len() {
            kdcache::format::rows::check_row(batch.get(i), spec).map_err(|w| Error::corrupt(path, Some(format!("block {b}, row {i}")), w))?;
        }
    }
    Ok(())
}

/// Flips `mask` into each byte of shard 0 of `dir` at `positions`, checking the shard each time.
/// Returns (rejected, not noticed, panics as (position, site, message)). Errors must be Corrupt.
fn parquet_sweep(dir: &Path, positions: impl IntoIterator<Item = usize>, mask: u8) -> (usize, usize, Vec<(usize, String, String)>) {
    let m = manifest(dir);
    let spec: RowSpec = kdcache::format::Manifest::load(&dir.join("manifest.json")).unwrap().spec();
    let (rows, block_rows) = (m["shards"][0]["rows"].as_u64().unwrap(), m["block_rows"].as_u64().unwrap() as usize);
    let orig = std::fs::read(shard(dir, 0)).unwrap();
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("shard-00000.parquet");
    let (mut caught, mut missed, mut panics) = (0, 0, vec![]);
    for pos in positions {
        let mut b = orig.clone();
        b[pos] ^= mask;
        std::fs::write(&p, &b).unwrap();
        match catch_site(|| parquet_shard_check(&p, &spec, rows, block_rows)) {
            Ok(Ok(())) => missed += 1,
            Ok(Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::Corrupt, "parquet byte {pos} ^ {mask:#x}: {e}");
                caught += 1;
            }
            Err((site, msg)) => panics.push((pos, site, msg)),
        }
    }
    (caught, missed, panics)
}

fn report_panics(what: &str, caught: usize, missed: usize, panics: &[(usize, String, String)]) {
    eprintln!("{what}: {caught} flips rejected, {missed} not noticed, {} panics", panics.len());
    let mut sites: std::collections::BTreeMap<&str, (usize, usize, &str)> = Default::default();
    for (pos, site, msg) in panics {
        sites.entry(site.as_str()).or_insert((0, *pos, msg.as_str())).0 += 1;
    }
    for (site, (n, pos, msg)) in &sites {
        eprintln!("  {n} panics at {site} (first at byte {pos}): {msg}");
    }
    assert!(panics.is_empty(), "{what}: the reader panicked on {} inputs, e.g. {:?}", panics.len(), &panics[..panics.len().min(5)]);
}

#[test]
fn parquet_byte_sweep_never_panics() {
    // flip bytes across a small Parquet shard: Parquet pages carry no checksum we rely on (the manifest's
    // whole-file XXH3 is verify's guard, bypassed here), so some flips may go unnoticed, but none may
    // give another error kind or panic
    let t = small(Encoding::Parquet);
    let len = std::fs::metadata(shard(t.path(), 0)).unwrap().len() as usize;
    let (c, m, p) = parquet_sweep(t.path(), (0..len).step_by(2), 0x41);
    report_panics("parquet byte sweep (every other byte)", c, m, &p);
    assert!(c > 0);
}

#[test]
fn parquet_metadata_sweep_never_panics() {
    let t = small(Encoding::Parquet);
    let b = std::fs::read(shard(t.path(), 0)).unwrap();
    let n = b.len();
    let meta_len = u32::from_le_bytes(b[n - 8..n - 4].try_into().unwrap()) as usize;
    for mask in [0x01, 0x10] {
        let (c, m, p) = parquet_sweep(t.path(), n - 8 - meta_len..n, mask);
        report_panics(&format!("parquet metadata sweep ^ {mask:#x}"), c, m, &p);
    }
}

#[test]
fn parquet_footer_damage() {
    let (t, _) = base(Encoding::Parquet);
    let b = std::fs::read(shard(t.path(), 0)).unwrap();
    let n = b.len();
    let meta_len = u32::from_le_bytes(b[n - 8..n - 4].try_into().unwrap()) as usize;
    let cases: Vec<(String, Box<dyn Fn(&mut Vec<u8>)>)> = vec![
        ("end magic".into(), Box::new(|b: &mut Vec<u8>| {
            let n = b.len();
            b[n - 1] = b'X'
        })),
        ("metadata length huge".into(), Box::new(|b: &mut Vec<u8>| {
            let n = b.len();
            b[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes())
        })),
        ("metadata length 0".into(), Box::new(|b: &mut Vec<u8>| {
            let n = b.len();
            b[n - 8..n - 4].copy_from_slice(&0u32.to_le_bytes())
        })),
        ("metadata length + 1".into(), Box::new(move |b: &mut Vec<u8>| {
            let n = b.len();
            b[n - 8..n - 4].copy_from_slice(&(meta_len as u32 + 1).to_le_bytes())
        })),
        ("metadata zeroed".into(), Box::new(move |b: &mut Vec<u8>| {
            let n = b.len();
            b[n - 8 - meta_len..n - 8].fill(0)
        })),
    ];
    for (name, f) in &cases {
        let d = copy_dir(t.path());
        modify(&shard(d.path(), 0), f);
        rehash(d.path());
        let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, name);
        expect_msg(&e, &["shard-00000.parquet"], name);
    }
}

#[test]
fn manifest_versions_and_garbage() {
    let (t, _) = base(Encoding::Kds);
    type Edit = Box<dyn Fn(&Path)>;
    let set = |k: &'static str, v: Value| -> Edit { Box::new(move |d: &Path| edit_manifest(d, |m| m[k] = v.clone())) };
    let raw = |s: &'static [u8]| -> Edit { Box::new(move |d: &Path| std::fs::write(d.join("manifest.json"), s).unwrap()) };
    let cases: Vec<(&str, ErrorKind, Edit)> = vec![
        ("format_version 2", ErrorKind::Version, set("format_version", json!(2))),
        ("format_version 1000", ErrorKind::Version, set("format_version", json!(1000))),
        ("format_version 0", ErrorKind::Corrupt, set("format_version", json!(0))),
        ("format_version -1", ErrorKind::Corrupt, set("format_version", json!(-1))),
        ("format_version \"1\"", ErrorKind::Corrupt, set("format_version", json!("1"))),
        ("format_version missing", ErrorKind::Corrupt, Box::new(|d: &Path| edit_manifest(d, |m| {
            m.as_object_mut().unwrap().remove("format_version");
        }))),
        ("format is not kdcache", ErrorKind::Corrupt, set("format", json!("kdcachf"))),
        ("empty manifest", ErrorKind::Corrupt, raw(b"")),
        ("not JSON", ErrorKind::Corrupt, raw(b"{\"format\": \"kdcache\", ")),
        ("JSON array", ErrorKind::Corrupt, raw(b"[1, 2, 3]")),
        ("encoding unknown", ErrorKind::Corrupt, set("encoding", json!("csv"))),
        ("top_k 0", ErrorKind::Corrupt, set("top_k", json!(0))),
        ("top_k > classes", ErrorKind::Corrupt, set("top_k", json!(51))),
        ("no temperatures", ErrorKind::Corrupt, set("temperatures", json!([]))),
        ("negative temperature", ErrorKind::Corrupt, set("temperatures", json!([1.0, -2.0]))),
        ("block_rows 0", ErrorKind::Corrupt, set("block_rows", json!(0))),
        ("class_prior of the wrong length", ErrorKind::Corrupt, Box::new(|d: &Path| edit_manifest(d, |m| {
            m["stats"]["class_prior"].as_array_mut().unwrap().pop();
        }))),
        ("shards not a list", ErrorKind::Corrupt, set("shards", json!({}))),
    ];
    for (name, kind, f) in &cases {
        let d = copy_dir(t.path());
        f(d.path());
        let e = expect_err(d.path(), Some(Stage::Open), *kind, name);
        expect_msg(&e, &["manifest.json"], name);
        // Manifest::load agrees with CacheReader::open
        let e2 = kdcache::format::Manifest::load(&d.path().join("manifest.json")).expect_err(name);
        assert_eq!(e2.kind(), *kind, "{name}: {e2}");
    }
    let d = copy_dir(t.path());
    edit_manifest(d.path(), |m| m["format_version"] = json!(7));
    let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Version, "newer");
    expect_msg(&e, &["format version 7 is newer", "(1)"], "newer");
}

#[test]
fn manifest_checksums_and_sizes() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Option<Stage>, Edit)> = vec![
            ("wrong xxh3", Some(Stage::Verify), Box::new(|m| {
                let h = u64::from_str_radix(m["shards"][1]["xxh3"].as_str().unwrap(), 16).unwrap();
                m["shards"][1]["xxh3"] = json!(format!("{:016x}", h ^ 1));
            })),
            // the schema wants lower case; either open or verify may refuse it
            ("xxh3 in upper case", None, Box::new(|m| {
                let h = m["shards"][1]["xxh3"].as_str().unwrap().to_uppercase();
                m["shards"][1]["xxh3"] = json!(if h.chars().any(|c| c.is_ascii_alphabetic()) { h } else { "A".repeat(16) });
            })),
            ("xxh3 not hex", Some(Stage::Open), Box::new(|m| m["shards"][1]["xxh3"] = json!("zzzzzzzzzzzzzzzz"))),
            ("xxh3 too short", Some(Stage::Open), Box::new(|m| m["shards"][1]["xxh3"] = json!("0123"))),
            ("bytes + 1", Some(Stage::Verify), Box::new(|m| {
                let b = m["shards"][1]["bytes"].as_u64().unwrap();
                m["shards"][1]["bytes"] = json!(b + 1);
            })),
            ("bytes 0", Some(Stage::Verify), Box::new(|m| m["shards"][1]["bytes"] = json!(0))),
        ];
        for (name, stage, f) in &cases {
            let d = copy_dir(t.path());
            edit_manifest(d.path(), f);
            let case = format!("{enc:?}: {name}");
            let e = expect_err(d.path(), *stage, ErrorKind::Corrupt, &case);
            if *stage == Some(Stage::Verify) {
                expect_msg(&e, &["shard-00001"], &case);
            }
        }
    }
}

#[test]
fn manifest_shards_must_tile_the_rows() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        type Edit = Box<dyn Fn(&mut Value)>;
        let add = |v: &Value, d: i64| json!(v.as_u64().unwrap() as i64 + d);
        let cases: Vec<(&str, Edit)> = vec![
            ("gap between shards", Box::new(move |m| m["shards"][1]["first_row"] = add(&m["shards"][1]["first_row"], 1))),
            ("overlapping shards", Box::new(move |m| m["shards"][1]["first_row"] = add(&m["shards"][1]["first_row"], -1))),
            ("first shard not at 0", Box::new(|m| m["shards"][0]["first_row"] = json!(1))),
            ("rows more than the shards", Box::new(move |m| m["rows"] = add(&m["rows"], 1))),
            ("rows fewer than the shards", Box::new(move |m| m["rows"] = add(&m["rows"], -1))),
            ("shards out of order", Box::new(|m| m["shards"].as_array_mut().unwrap().swap(0, 1))),
            ("an empty shard", Box::new(|m| {
                let mut s = m["shards"][2].clone();
                s["first_row"] = json!(300);
                s["rows"] = json!(0);
                m["shards"].as_array_mut().unwrap().push(s);
            })),
            ("a shard dropped", Box::new(|m| {
                m["shards"].as_array_mut().unwrap().pop();
            })),
            // tiles 0..300, but the shards hold other row counts than the manifest says
            ("rows moved between shards", Box::new(move |m| {
                m["shards"][0]["rows"] = add(&m["shards"][0]["rows"], -1);
                m["shards"][1]["first_row"] = add(&m["shards"][1]["first_row"], -1);
                m["shards"][1]["rows"] = add(&m["shards"][1]["rows"], 1);
            })),
            ("row count overflows", Box::new(|m| {
                m["shards"][2]["rows"] = json!(u64::MAX);
                m["rows"] = json!(u64::MAX);
            })),
        ];
        for (name, f) in &cases {
            let d = copy_dir(t.path());
            edit_manifest(d.path(), f);
            expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, &format!("{enc:?}: {name}"));
        }
    }
}

#[test]
fn manifest_file_names_stay_in_the_directory() {
    let (t, _) = base(Encoding::Kds);
    // a real file outside the cache directory, which a path-traversing reader would open
    let outside = t.path().parent().unwrap().join(format!("x-{}", std::process::id()));
    let names = ["../x", "..", ".", "../shard-00000.kds", "sub/shard-00000.kds", "/etc/passwd", "", ".hidden", "a\\b", "shard-00000.kds\0", "shärd.kds", "x y.kds"];
    for name in names {
        let d = copy_dir(t.path());
        edit_manifest(d.path(), |m| m["shards"][0]["file"] = json!(name));
        let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, &format!("file name {name:?}"));
        expect_msg(&e, &["bad file name"], name);
    }
    assert!(!outside.exists());
    // a good name that does not exist
    let d = copy_dir(t.path());
    edit_manifest(d.path(), |m| m["shards"][0]["file"] = json!("shard-99999.kds"));
    let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Io, "nonexistent shard name");
    expect_msg(&e, &["shard-99999.kds"], "nonexistent shard name");
}

#[test]
fn missing_files() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        for i in 0..3 {
            let d = copy_dir(t.path());
            std::fs::remove_file(shard(d.path(), i)).unwrap();
            let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Io, &format!("{enc:?}: shard {i} missing"));
            expect_msg(&e, &[&format!("shard-0000{i}")], "missing shard");
            assert!(e.is_bad_input());
        }
        // the shard replaced by a directory
        let d = copy_dir(t.path());
        let p = shard(d.path(), 0);
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        match outcome(d.path(), "shard is a directory") {
            Err((Stage::Open, e)) => {
                let want: &[ErrorKind] = &[ErrorKind::Io];
                assert!(want.contains(&e.kind()), "{enc:?} shard is a directory: {e}");
                assert!(e.to_string().contains("shard-00000"), "{e}");
            }
            other => panic!("{enc:?} shard is a directory: {:?}", other.map(|_| ())),
        }
        // no manifest
        let d = copy_dir(t.path());
        std::fs::remove_file(d.path().join("manifest.json")).unwrap();
        let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Io, "no manifest");
        expect_msg(&e, &["not a kdcache cache"], "no manifest");
        // only a partial manifest: an unfinished build
        std::fs::write(d.path().join("manifest.partial.json"), b"{}").unwrap();
        let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Io, "unfinished build");
        expect_msg(&e, &["did not finish"], "unfinished build");
    }
    let t = tempfile::tempdir().unwrap();
    expect_err(&t.path().join("nowhere"), Some(Stage::Open), ErrorKind::Io, "no directory");
    std::fs::write(t.path().join("file"), b"x").unwrap();
    expect_err(&t.path().join("file"), Some(Stage::Open), ErrorKind::Io, "a file, not a directory");
}

#[test]
fn spec_mismatch_between_manifest_and_shards() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("top_k 6", Box::new(|m| m["top_k"] = json!(6))),
            ("top_k 9", Box::new(|m| m["top_k"] = json!(9))),
            ("dtype f32", Box::new(|m| m["logit_dtype"] = json!("f32"))),
            ("dtype bf16", Box::new(|m| m["logit_dtype"] = json!("bf16"))),
            ("three temperatures", Box::new(|m| m["temperatures"] = json!([1.0, 2.0, 4.0]))),
            ("one temperature", Box::new(|m| m["temperatures"] = json!([1.0]))),
            ("tail samples", Box::new(|m| m["tail_samples"] = json!(3))),
            ("aug_dim", Box::new(|m| m["aug_dim"] = json!(2))),
            ("other encoding", Box::new(|m| {
                m["encoding"] = json!(if m["encoding"] == "kds" { "parquet" } else { "kds" });
            })),
        ];
        for (name, f) in &cases {
            let d = copy_dir(t.path());
            edit_manifest(d.path(), f);
            let case = format!("{enc:?} shards, manifest says {name}");
            // Parquet: list sizes (K, T) are only caught when a block is decoded, see
            // parquet_open_checks_list_sizes
            let stage = if enc == Encoding::Parquet { None } else { Some(Stage::Open) };
            let e = expect_err(d.path(), stage, ErrorKind::Corrupt, &case);
            expect_msg(&e, &["shard-00000"], &case);
        }
    }
    // Parquet row groups larger than the manifest's block_rows
    let (t, _) = base(Encoding::Parquet);
    let d = copy_dir(t.path());
    edit_manifest(d.path(), |m| m["block_rows"] = json!(32));
    let e = expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "parquet block_rows 32");
    expect_msg(&e, &["row group 0"], "parquet block_rows 32");
}

/// FORMAT.md: Parquet "readers check the schema, list sizes and row counts against the manifest". But
/// `ParquetShard::open` loads the metadata `with_schema(want)` and then compares `meta.schema()` — which
/// is `want` itself — with `want`, so the FixedSizeList sizes (K, T, M, aug_dim) stored as Parquet LISTs
/// are never checked at open; a shard of K = 8 under a manifest of K = 6 opens, and fails only when a
/// block is decoded ("misaligned row").
#[test]
fn parquet_open_checks_list_sizes() {
    let (t, _) = base(Encoding::Parquet);
    for (name, f) in [("top_k 6", json!(6)), ("top_k 9", json!(9))] {
        let d = copy_dir(t.path());
        edit_manifest(d.path(), |m| m["top_k"] = f.clone());
        expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, name);
    }
    let d = copy_dir(t.path());
    edit_manifest(d.path(), |m| m["temperatures"] = json!([1.0, 2.0, 4.0]));
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "three temperatures");
}

#[test]
fn parquet_wrong_schema() {
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let (t, rows) = base(Encoding::Parquet);
    let s = spec(LogitDtype::F16);
    // rewrite shard 0 with the same data but a doctored schema
    let write = |dir: &Path, doctor: &dyn Fn(&Schema) -> Schema, cols: &dyn Fn(Vec<arrow::array::ArrayRef>) -> Vec<arrow::array::ArrayRef>| {
        let rb = kdcache::format::parquet::to_record_batch(&s, &rows.slice(0..128)).unwrap();
        let schema = Arc::new(doctor(&rb.schema()));
        let rb = arrow::array::RecordBatch::try_new(schema.clone(), cols(rb.columns().to_vec())).unwrap();
        let f = std::fs::File::create(shard(dir, 0)).unwrap();
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(64)).build();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, Some(props)).unwrap();
        w.write(&rb).unwrap();
        w.close().unwrap();
        rehash(dir);
    };
    let rename = |from: &'static str, to: &'static str| {
        move |sc: &Schema| {
            Schema::new(sc.fields().iter().map(|f| if f.name() == from { f.as_ref().clone().with_name(to) } else { f.as_ref().clone() }).collect::<Vec<Field>>())
        }
    };
    let same = |c: Vec<arrow::array::ArrayRef>| c;
    // sanity: the doctoring itself (identity) gives a readable shard
    let d = copy_dir(t.path());
    write(d.path(), &|sc| sc.clone(), &same);
    outcome(d.path(), "identity rewrite").unwrap_or_else(|(st, e)| panic!("identity rewrite failed at {st:?}: {e}"));

    let d = copy_dir(t.path());
    write(d.path(), &rename("label", "labels"), &same);
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "column renamed");

    let d = copy_dir(t.path());
    write(d.path(), &rename("lse", "log_tail2"), &same);
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "lse renamed");

    // columns in another order
    let d = copy_dir(t.path());
    let swap = |sc: &Schema| {
        let mut f: Vec<Field> = sc.fields().iter().map(|f| f.as_ref().clone()).collect();
        f.swap(5, 6);
        Schema::new(f)
    };
    write(d.path(), &swap, &|mut c| {
        c.swap(5, 6);
        c
    });
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "lse and log_tail swapped");

    // a column dropped
    let d = copy_dir(t.path());
    let drop_last = |sc: &Schema| Schema::new(sc.fields().iter().take(6).map(|f| f.as_ref().clone()).collect::<Vec<Field>>());
    write(d.path(), &drop_last, &|mut c| {
        c.pop();
        c
    });
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "log_tail dropped");

    // an extra column
    let d = copy_dir(t.path());
    let extra = |sc: &Schema| {
        let mut f: Vec<Field> = sc.fields().iter().map(|f| f.as_ref().clone()).collect();
        f.push(Field::new("extra", DataType::UInt32, false));
        Schema::new(f)
    };
    write(d.path(), &extra, &|mut c| {
        c.push(Arc::new(arrow::array::UInt32Array::from(vec![0u32; 128])));
        c
    });
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "extra column");

    // `row` stored as i64 instead of u64
    let d = copy_dir(t.path());
    let retype = |sc: &Schema| {
        let mut f: Vec<Field> = sc.fields().iter().map(|f| f.as_ref().clone()).collect();
        f[0] = Field::new("row", DataType::Int64, false);
        Schema::new(f)
    };
    write(d.path(), &retype, &|mut c| {
        c[0] = Arc::new(arrow::array::Int64Array::from((0..128i64).collect::<Vec<_>>()));
        c
    });
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "row as i64");

    // a kds shard where a Parquet one should be
    let (k, _) = base(Encoding::Kds);
    let d = copy_dir(t.path());
    std::fs::copy(shard(k.path(), 0), shard(d.path(), 0)).unwrap();
    rehash(d.path());
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "kds bytes in a .parquet file");
    let d = copy_dir(k.path());
    std::fs::copy(shard(t.path(), 0), shard(d.path(), 0)).unwrap();
    rehash(d.path());
    expect_err(d.path(), Some(Stage::Open), ErrorKind::Corrupt, "parquet bytes in a .kds file");
}

#[test]
fn bad_rows_are_named_by_verify() {
    type Damage = fn(&mut RowBatch, usize);
    let cases: Vec<(&str, usize, Damage, &str)> = vec![
        ("unsorted logits", 77, |b, i| {
            let (a, c) = (b.topk_logit.get(i * 8), b.topk_logit.get(i * 8 + 3));
            // rebuild the row's logits with ranks 0 and 3 swapped
            let mut v = b.topk_logit.to_f32();
            v[i * 8] = c - 1.0;
            v[i * 8 + 3] = a + 1.0;
            let mut l = kdcache::format::rows::Logits::new(b.topk_logit.dtype());
            v.into_iter().for_each(|x| l.push(x));
            b.topk_logit = l;
        }, "ranks not sorted"),
        ("repeated class id", 200, |b, i| b.topk_idx[i * 8 + 5] = b.topk_idx[i * 8 + 2], "appears twice"),
        ("class id >= C", 5, |b, i| b.topk_idx[i * 8 + 7] = 50, "is not < C"),
        ("tail mass off", 150, |b, i| b.log_tail[i * 2 + 1] = (b.log_tail[i * 2 + 1].exp() + 0.2).ln(), "disagree"),
        ("lse off", 299, |b, i| b.lse[i * 2] += 0.5, "disagree"),
        ("positive log tail", 128, |b, i| b.log_tail[i * 2] = 0.5, "log-probability"),
        ("NaN lse", 64, |b, i| b.lse[i * 2 + 1] = f32::NAN, "not finite"),
        ("infinite logit", 0, |b, i| {
            let mut v = b.topk_logit.to_f32();
            v[i * 8] = f32::INFINITY;
            let mut l = kdcache::format::rows::Logits::new(b.topk_logit.dtype());
            v.into_iter().for_each(|x| l.push(x));
            b.topk_logit = l;
        }, "not finite"),
    ];
    for enc in ENCODINGS {
        for (name, row, damage, what) in &cases {
            let (t, _) = base_with(enc, LogitDtype::F16, ROWS, BLOCK_ROWS, SHARD_ROWS, |b| damage(b, *row));
            let case = format!("{enc:?}: {name} in row {row}");
            let e = expect_err(t.path(), Some(Stage::Verify), ErrorKind::Corrupt, &case);
            let shard = format!("shard-0000{}", row / SHARD_ROWS);
            expect_msg(&e, &[&format!("cache row {row}"), what, &shard], &case);
        }
    }
}

#[test]
fn npy_rejects() {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good.npy");
    let v: Vec<f32> = (0..24).map(|x| x as f32).collect();
    npy::write(&good, NpyDtype::F32, &[4, 6], bytemuck::cast_slice(&v)).unwrap();
    let g = std::fs::read(&good).unwrap();
    let header_end = 10 + u16::from_le_bytes([g[8], g[9]]) as usize;
    let header = String::from_utf8(g[10..header_end].to_vec()).unwrap();
    // a file with `header` replaced (same length kept by padding), and `data` after it
    let with_header = |h: &str, data: &[u8]| -> Vec<u8> {
        let mut h = h.trim_end().to_string();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(data);
        b
    };
    let data = &g[header_end..];
    let cases: Vec<(&str, ErrorKind, Vec<u8>)> = vec![
        ("complex64", ErrorKind::Invalid, with_header(&header.replace("<f4", "<c8"), &[data, data].concat())),
        ("big-endian float32", ErrorKind::Invalid, with_header(&header.replace("<f4", ">f4"), data)),
        ("bool", ErrorKind::Invalid, with_header(&header.replace("<f4", "|b1"), &data[..24])),
        ("unicode strings", ErrorKind::Invalid, with_header(&header.replace("<f4", "<U1"), data)),
        ("Fortran order", ErrorKind::Invalid, with_header(&header.replace("False", "True"), data)),
        ("truncated data", ErrorKind::Corrupt, g[..g.len() - 1].to_vec()),
        ("half the data", ErrorKind::Corrupt, g[..header_end + data.len() / 2].to_vec()),
        ("no data", ErrorKind::Corrupt, g[..header_end].to_vec()),
        ("trailing bytes", ErrorKind::Corrupt, [&g[..], &[0u8; 4]].concat()),
        ("truncated header", ErrorKind::Corrupt, g[..header_end - 10].to_vec()),
        ("bad magic", ErrorKind::Corrupt, [b"\x93NUMPZ", &g[6..]].concat()),
        ("version 9", ErrorKind::Corrupt, [&g[..6], &[9u8], &g[7..]].concat()),
        ("version 2, too short", ErrorKind::Corrupt, b"\x93NUMPY\x02\x00\x10\x00".to_vec()),
        ("tiny", ErrorKind::Corrupt, b"\x93NUMPY".to_vec()),
        ("empty", ErrorKind::Corrupt, vec![]),
        ("header length beyond the file", ErrorKind::Corrupt, [&g[..8], &[0xff, 0xff], &g[10..]].concat()),
        ("header not UTF-8", ErrorKind::Corrupt, {
            let mut b = g.clone();
            b[12] = 0xff;
            b
        }),
        ("no shape", ErrorKind::Corrupt, with_header(&header.replace("'shape'", "'shapf'"), data)),
        ("no descr", ErrorKind::Corrupt, with_header(&header.replace("'descr'", "'desc'"), data)),
        ("shape not a tuple", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "[4, 6]"), data)),
        ("negative dimension", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "(-4, 6)"), data)),
        ("shape overflows", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "(4294967296, 4294967296, 4)"), data)),
        ("shape larger than the data", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "(5, 6)"), data)),
        ("shape smaller than the data", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "(4, 5)"), data)),
        ("misaligned data", ErrorKind::Corrupt, {
            // a version-2 header whose length puts the data at an offset that is not a multiple of 4
            let mut h = header.trim_end().to_string();
            while (12 + h.len() + 1) % 4 != 1 {
                h.push(' ');
            }
            h.push('\n');
            let mut b = b"\x93NUMPY\x02\x00".to_vec();
            b.extend_from_slice(&(h.len() as u32).to_le_bytes());
            b.extend_from_slice(h.as_bytes());
            b.extend_from_slice(data);
            b
        }),
    ];
    for (name, kind, bytes) in &cases {
        let p = t.path().join("case.npy");
        std::fs::write(&p, bytes).unwrap();
        let r = catch_unwind(|| Npy::open(&p)).unwrap_or_else(|_| panic!("npy {name}: Npy::open panicked"));
        match r {
            Ok(a) => panic!("npy {name}: accepted as {:?} {:?}", a.dtype, a.shape),
            Err(e) => {
                assert_eq!(e.kind(), *kind, "npy {name}: {e}");
                assert!(e.to_string().contains("case.npy"), "npy {name}: the error does not name the file: {e}");
            }
        }
    }
    // the rank is the caller's business: Npy::open reports it, import refuses the wrong one
    for (shape, n) in [(vec![], 1usize), (vec![24], 24), (vec![2, 3, 4], 24), (vec![0, 5], 0)] {
        let p = t.path().join("rank.npy");
        npy::write(&p, NpyDtype::F32, &shape, bytemuck::cast_slice(&v[..n])).unwrap();
        let a = Npy::open(&p).unwrap();
        assert_eq!(a.shape, shape);
        assert_eq!(a.data().len(), n * 4);
    }
    let p = t.path().join("missing.npy");
    assert_eq!(Npy::open(&p).err().unwrap().kind(), ErrorKind::Io);
    assert_eq!(Npy::open(t.path()).err().map(|e| e.kind()), Some(ErrorKind::Io), "a directory");
}

#[test]
fn import_refuses_wrong_rank_and_dtype() {
    use kdcache::import::{ImportOptions, import};
    let t = tempfile::tempdir().unwrap();
    let opts = |logits: PathBuf, labels: Option<PathBuf>, out: &str| ImportOptions {
        logits,
        labels,
        data: None,
        k: 2,
        temperatures: vec![1.0],
        dtype: LogitDtype::F16,
        out: t.path().join(out),
        writer: kdcache::format::WriterOptions::default(),
        progress: false,
    };
    let z: Vec<f32> = (0..24).map(|x| (x % 7) as f32).collect();
    let cases: Vec<(&str, NpyDtype, Vec<usize>, Vec<u8>)> = vec![
        ("rank 1", NpyDtype::F32, vec![24], bytemuck::cast_slice(&z).to_vec()),
        ("rank 3", NpyDtype::F32, vec![2, 3, 4], bytemuck::cast_slice(&z).to_vec()),
        ("rank 0", NpyDtype::F32, vec![], bytemuck::cast_slice(&z[..1]).to_vec()),
        ("int64 logits", NpyDtype::I64, vec![4, 3], vec![0u8; 96]),
        ("int32 logits", NpyDtype::I32, vec![4, 6], vec![0u8; 96]),
        ("zero classes", NpyDtype::F32, vec![4, 0], vec![]),
    ];
    for (name, dtype, shape, data) in &cases {
        let p = t.path().join(format!("{}.npy", name.replace(' ', "_")));
        npy::write(&p, *dtype, shape, data).unwrap();
        let e = import(&opts(p, None, name)).expect_err(name);
        assert_eq!(e.kind(), ErrorKind::Invalid, "{name}: {e}");
        assert!(!t.path().join(name).join("manifest.json").exists(), "{name}: a cache was published");
    }
    // labels of the wrong dtype or rank
    let zp = t.path().join("z.npy");
    npy::write(&zp, NpyDtype::F32, &[4, 6], bytemuck::cast_slice(&z)).unwrap();
    for (name, dtype, shape, data) in [
        ("float labels", NpyDtype::F32, vec![4], vec![0u8; 16]),
        ("2-d labels", NpyDtype::I64, vec![4, 1], vec![0u8; 32]),
        ("too few labels", NpyDtype::I64, vec![3], vec![0u8; 24]),
    ] {
        let p = t.path().join(format!("{}.npy", name.replace(' ', "_")));
        npy::write(&p, dtype, &shape, &data).unwrap();
        let e = import(&opts(zp.clone(), Some(p), name)).expect_err(name);
        assert_eq!(e.kind(), ErrorKind::Invalid, "{name}: {e}");
    }
    // a truncated logits file is corrupt
    let p = t.path().join("trunc.npy");
    let b = std::fs::read(&zp).unwrap();
    std::fs::write(&p, &b[..b.len() - 3]).unwrap();
    assert_eq!(import(&opts(p, None, "trunc")).expect_err("truncated").kind(), ErrorKind::Corrupt);
}

// ---------------------------------------------------------------------------------------------------
// the static corpus

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// One row of the corpus README's table.
#[derive(Debug)]
struct Expect {
    entry: String,
    check: String,
    kind: Option<ErrorKind>,
    contains: Vec<String>,
}

fn parse_kind(s: &str) -> Option<ErrorKind> {
    Some(match s {
        "Ok" => return None,
        "Io" => ErrorKind::Io,
        "Corrupt" => ErrorKind::Corrupt,
        "Version" => ErrorKind::Version,
        "Invalid" => ErrorKind::Invalid,
        other => panic!("corpus README: unknown error kind {other:?}"),
    })
}

/// Parses `| `entry` | check | kind | `contains` ... | what |` rows of tests/corpus/README.md.
fn corpus_expectations() -> Vec<Expect> {
    let readme = std::fs::read_to_string(corpus_dir().join("README.md")).expect("tests/corpus/README.md");
    let mut out = vec![];
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let entry = cells[1].trim_matches('`').trim_end_matches('/').to_string();
        let contains = cells[4].split('`').skip(1).step_by(2).map(String::from).collect();
        out.push(Expect { entry, check: cells[2].to_string(), kind: parse_kind(cells[3]), contains });
    }
    out
}

#[test]
fn corpus_regression() {
    let exp = corpus_expectations();
    assert!(exp.len() >= 20, "the corpus README lists only {} entries", exp.len());
    // every entry on disk is listed, and every listed entry exists
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != "README.md")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = exp.iter().map(|e| e.entry.clone()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/corpus and its README disagree");
    let total: u64 = walk_size(&corpus_dir());
    assert!(total < 200 * 1024, "the corpus has grown to {total} bytes");

    for x in &exp {
        let path = corpus_dir().join(&x.entry);
        let case = format!("corpus {}", x.entry);
        let got: Result<(), (Stage, Error)> = match x.check.as_str() {
            "cache" => outcome(&path, &case).map(|_| ()),
            "npy" => catch_unwind(|| Npy::open(&path)).unwrap_or_else(|_| panic!("{case}: panicked")).map(|_| ()).map_err(|e| (Stage::Open, e)),
            "manifest" => kdcache::format::Manifest::load(&path).map(|_| ()).map_err(|e| (Stage::Open, e)),
            other => panic!("{case}: unknown check {other:?}"),
        };
        match (x.kind, got) {
            (None, Ok(())) => {}
            (None, Err((st, e))) => panic!("{case}: expected Ok, failed at {st:?}: {e}"),
            (Some(k), Ok(())) => panic!("{case}: expected {k:?}, but it was accepted"),
            (Some(k), Err((st, e))) => {
                assert_eq!(e.kind(), k, "{case}: at {st:?}: {e}");
                let msg = e.to_string();
                for c in &x.contains {
                    assert!(msg.contains(c.as_str()), "{case}: message lacks {c:?}: {msg}");
                }
            }
        }
    }
}

fn walk_size(p: &Path) -> u64 {
    let m = std::fs::metadata(p).unwrap();
    if m.is_dir() { std::fs::read_dir(p).unwrap().map(|e| walk_size(&e.unwrap().path())).sum() } else { m.len() }
}

/// Writes tests/corpus/ (entries and README.md) from scratch. Run it by hand:
/// `KDCACHE_WRITE_CORPUS=1 cargo test --no-default-features --test corrupt -- --ignored write_corpus`.
#[test]
#[ignore = "writes tests/corpus; run by hand after a deliberate format change"]
fn write_corpus() {
    if std::env::var_os("KDCACHE_WRITE_CORPUS").is_none() {
        eprintln!("set KDCACHE_WRITE_CORPUS=1 to rewrite tests/corpus");
        return;
    }
    let root = corpus_dir();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    // tiny caches: C = 20, K = 4, T = [1, 2], f16, 24 rows in blocks of 8 and shards of 16 (2 shards)
    let s = RowSpec { classes: 20, k: 4, temperatures: vec![1.0, 2.0], tail_samples: 0, aug_dim: 0, logit_dtype: LogitDtype::F16 };
    let cache = |name: &str, enc: Encoding, damage: &dyn Fn(&mut RowBatch)| -> PathBuf {
        let (mut b, prior) = random_rows(&s, 24, 11);
        damage(&mut b);
        let dir = root.join(name);
        write_cache(&dir, &s, enc, 8, 16, &b, Some(&prior));
        // keep the files small and stable: no absolute paths or versions that change per build
        edit_manifest(&dir, |m| m["kdcache_version"] = json!("corpus"));
        dir
    };
    let none = |_: &mut RowBatch| {};
    let mut rows: Vec<(String, &str, &str, String, &str)> = vec![];
    let mut add = |entry: &str, check: &'static str, kind: &'static str, contains: &[&str], what: &'static str| {
        let c = contains.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" ");
        rows.push((entry.to_string(), check, kind, c, what));
    };

    cache("ok-kds", Encoding::Kds, &none);
    add("ok-kds/", "cache", "Ok", &[], "a valid kds cache (the control)");
    cache("ok-parquet", Encoding::Parquet, &none);
    add("ok-parquet/", "cache", "Ok", &[], "a valid Parquet cache (the control)");

    let d = cache("kds-truncated-mid-footer", Encoding::Kds, &none);
    modify(&d.join("shard-00000.kds"), |b| {
        let lay = KdsLayout::of(b);
        b.truncate((lay.footer.start + lay.footer.end) / 2);
    });
    add("kds-truncated-mid-footer/", "cache", "Corrupt", &["shard-00000.kds", "end magic"], "shard 0 cut in the middle of its footer JSON");

    let d = cache("kds-one-byte-short", Encoding::Kds, &none);
    modify(&d.join("shard-00001.kds"), |b| {
        b.pop();
    });
    rehash(&d);
    add("kds-one-byte-short/", "cache", "Corrupt", &["shard-00001.kds"], "shard 1 lacks its last byte (manifest rehashed to match)");

    let d = cache("kds-flipped-chunk-byte", Encoding::Kds, &none);
    modify(&d.join("shard-00000.kds"), |b| {
        let lay = KdsLayout::of(b);
        let r = lay.chunks()[4].2.clone(); // block 0, topk_logit
        b[r.start + r.len() / 2] ^= 0x01;
    });
    rehash(&d);
    add("kds-flipped-chunk-byte/", "cache", "Corrupt", &["shard-00000.kds", "block 0, column topk_logit", "checksum mismatch"], "one bit of a compressed column chunk flipped; manifest rehashed, so the chunk checksum must catch it");

    let d = cache("kds-flipped-chunk-byte-manifest-stale", Encoding::Kds, &none);
    modify(&d.join("shard-00001.kds"), |b| {
        let lay = KdsLayout::of(b);
        let r = lay.chunks()[0].2.clone();
        b[r.start + 1] ^= 0x01;
    });
    add("kds-flipped-chunk-byte-manifest-stale/", "cache", "Corrupt", &["shard-00001.kds", "checksum"], "a chunk byte flipped, manifest untouched: verify's whole-file checksum catches it");

    let d = cache("kds-flipped-header-byte", Encoding::Kds, &none);
    modify(&d.join("shard-00000.kds"), |b| {
        let i = b.windows(5).position(|w| w == b"\"k\":4").unwrap();
        b[i + 4] ^= 0x01; // k 4 -> 5
    });
    rehash(&d);
    add("kds-flipped-header-byte/", "cache", "Corrupt", &["shard-00000.kds", "disagrees with the manifest"], "the header's `\"k\":4` became `\"k\":5`");

    let d = cache("kds-flipped-footer-byte", Encoding::Kds, &none);
    modify(&d.join("shard-00000.kds"), |b| {
        let lay = KdsLayout::of(b);
        b[lay.footer.start + 10] ^= 0x02;
    });
    rehash(&d);
    add("kds-flipped-footer-byte/", "cache", "Corrupt", &["shard-00000.kds", "footer checksum mismatch"], "a byte of the footer JSON flipped");

    let d = cache("kds-trailing-bytes", Encoding::Kds, &none);
    modify(&d.join("shard-00001.kds"), |b| b.extend_from_slice(b"\0\0\0\0"));
    rehash(&d);
    add("kds-trailing-bytes/", "cache", "Corrupt", &["shard-00001.kds", "end magic"], "4 bytes after the end magic");

    let d = cache("kds-version-2", Encoding::Kds, &none);
    modify(&d.join("shard-00000.kds"), |b| b[4..8].copy_from_slice(&2u32.to_le_bytes()));
    rehash(&d);
    add("kds-version-2/", "cache", "Version", &["shard-00000.kds", "version 2"], "shard 0 claims kds version 2");

    let d = cache("manifest-newer-version", Encoding::Kds, &none);
    edit_manifest(&d, |m| m["format_version"] = json!(2));
    add("manifest-newer-version/", "cache", "Version", &["format version 2 is newer", "(1)"], "manifest format_version 2");

    let d = cache("manifest-wrong-xxh3", Encoding::Kds, &none);
    edit_manifest(&d, |m| {
        let h = u64::from_str_radix(m["shards"][1]["xxh3"].as_str().unwrap(), 16).unwrap();
        m["shards"][1]["xxh3"] = json!(format!("{:016x}", h ^ 0x10));
    });
    add("manifest-wrong-xxh3/", "cache", "Corrupt", &["shard-00001.kds", "checksum"], "shard 1's recorded XXH3 is off by one bit (opens, fails verify)");

    let d = cache("manifest-shards-gap", Encoding::Kds, &none);
    edit_manifest(&d, |m| m["shards"][1]["first_row"] = json!(17));
    add("manifest-shards-gap/", "cache", "Corrupt", &["manifest.json", "starts at row 17, expected 16"], "shard 1 starts at row 17: the shards do not tile the rows");

    let d = cache("manifest-dotdot-name", Encoding::Kds, &none);
    edit_manifest(&d, |m| m["shards"][0]["file"] = json!("../x"));
    add("manifest-dotdot-name/", "cache", "Corrupt", &["manifest.json", "bad file name"], "shard file name `../x`");

    let d = cache("missing-shard", Encoding::Kds, &none);
    std::fs::remove_file(d.join("shard-00001.kds")).unwrap();
    add("missing-shard/", "cache", "Io", &["shard-00001.kds"], "shard 1 is listed but absent");

    cache("row-unsorted-logits", Encoding::Kds, &|b| {
        let mut v = b.topk_logit.to_f32();
        v[5 * 4] = v[5 * 4 + 1] - 1.0; // rank 0 below rank 1
        let mut l = kdcache::format::rows::Logits::new(LogitDtype::F16);
        v.into_iter().for_each(|x| l.push(x));
        b.topk_logit = l;
    });
    add("row-unsorted-logits/", "cache", "Corrupt", &["shard-00000.kds", "cache row 5", "ranks not sorted"], "row 5's top-K logits are not in descending order (written through the writer)");

    cache("row-repeated-id", Encoding::Parquet, &|b| b.topk_idx[18 * 4 + 3] = b.topk_idx[18 * 4]);
    add("row-repeated-id/", "cache", "Corrupt", &["shard-00001.parquet", "cache row 18", "appears twice"], "row 18 names one class twice in topk_idx (Parquet)");

    let d = cache("parquet-truncated", Encoding::Parquet, &none);
    modify(&d.join("shard-00000.parquet"), |b| b.truncate(b.len() / 2));
    rehash(&d);
    add("parquet-truncated/", "cache", "Corrupt", &["shard-00000.parquet"], "shard 0 cut in half");

    let d = cache("parquet-wrong-schema", Encoding::Parquet, &none);
    edit_manifest(&d, |m| m["logit_dtype"] = json!("f32"));
    add("parquet-wrong-schema/", "cache", "Corrupt", &["shard-00000.parquet"], "the shards store f16 logits, the manifest says f32");

    let d = cache("parquet-flipped-byte", Encoding::Parquet, &none);
    modify(&d.join("shard-00000.parquet"), |b| b[100] ^= 0x08);
    add("parquet-flipped-byte/", "cache", "Corrupt", &["shard-00000.parquet", "checksum"], "a data byte flipped, manifest untouched: verify's whole-file checksum catches it");

    // npy files
    let z: Vec<f32> = (0..12).map(|x| x as f32 / 4.0).collect();
    let good = root.join("npy-tmp.npy");
    npy::write(&good, NpyDtype::F32, &[3, 4], bytemuck::cast_slice(&z)).unwrap();
    let g = std::fs::read(&good).unwrap();
    std::fs::remove_file(&good).unwrap();
    let text = String::from_utf8_lossy(&g).to_string();
    let swap = |from: &str, to: &str| -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let i = text.find(from).unwrap();
        let mut b = g.clone();
        b[i..i + from.len()].copy_from_slice(to.as_bytes());
        b
    };
    std::fs::write(root.join("npy-wrong-dtype.npy"), swap("<f4", "<c8")).unwrap();
    add("npy-wrong-dtype.npy", "npy", "Invalid", &["npy-wrong-dtype.npy", "not supported"], "dtype `<c8` (complex64)");
    std::fs::write(root.join("npy-big-endian.npy"), swap("<f4", ">f4")).unwrap();
    add("npy-big-endian.npy", "npy", "Invalid", &["npy-big-endian.npy", "not supported"], "dtype `>f4`");
    std::fs::write(root.join("npy-fortran.npy"), swap("False", "True ")).unwrap();
    add("npy-fortran.npy", "npy", "Invalid", &["Fortran"], "fortran_order True");
    std::fs::write(root.join("npy-truncated.npy"), &g[..g.len() - 5]).unwrap();
    add("npy-truncated.npy", "npy", "Corrupt", &["npy-truncated.npy", "truncated"], "the data lacks its last 5 bytes");
    std::fs::write(root.join("npy-trailing.npy"), [&g[..], b"\0\0\0\0"].concat()).unwrap();
    add("npy-trailing.npy", "npy", "Corrupt", &["trailing"], "4 bytes after the data");
    std::fs::write(root.join("npy-bad-magic.npy"), [b"\x93NUMPX", &g[6..]].concat()).unwrap();
    add("npy-bad-magic.npy", "npy", "Corrupt", &["bad magic"], "magic `\\x93NUMPX`");
    {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }";
        let mut h = h.to_string();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        std::fs::write(root.join("npy-shape-overflow.npy"), b).unwrap();
    }
    add("npy-shape-overflow.npy", "npy", "Corrupt", &["overflows"], "shape (2³², 2³², 4): its element count overflows");

    // a lone manifest
    let m = root.join("manifest-not-kdcache.json");
    std::fs::write(&m, br#"{"format": "something-else", "format_version": 1}"#).unwrap();
    add("manifest-not-kdcache.json", "manifest", "Corrupt", &["not a kdcache manifest"], "`Manifest::load` on a JSON file of another format");

    let mut readme = String::from(
        "# Corrupt-file corpus\n\n\
         A static regression set of damaged caches and input files, replayed by `corpus_regression` in\n\
         `tests/corrupt.rs`. Each row below is parsed by that test: the entry, how it is checked, the\n\
         `kdcache::ErrorKind` expected (`Ok` for the controls), and substrings the error message must contain.\n\n\
         Checks: `cache` = `CacheReader::open`, then `verify(None)`, then reading every row; `npy` =\n\
         `Npy::open`; `manifest` = `Manifest::load`. Caches are tiny: C = 20, K = 4, T = [1, 2], f16 logits,\n\
         24 rows in blocks of 8 and shards of 16 rows. `rehashed` means the manifest's sizes and checksums\n\
         were updated to match the damaged shard, so the shard's own structure and checksums must catch it.\n\n\
         Regenerate (after a deliberate format change only):\n\
         `KDCACHE_WRITE_CORPUS=1 cargo test --no-default-features --test corrupt -- --ignored write_corpus`\n\n\
         | entry | check | expected | message contains | what |\n\
         |---|---|---|---|---|\n",
    );
    for (entry, check, kind, contains, what) in &rows {
        readme.push_str(&format!("| `{entry}` | {check} | {kind} | {contains} | {what} |\n"));
    }
    std::fs::write(root.join("README.md"), readme).unwrap();
    // the corpus must pass its own expectations
    corpus_regression();
}
