//! The static corpus in `tests/corpus/`: damaged caches and input files kept on disk, each listed with
//! its expected error in `tests/corpus/README.md`, replayed by `corpus_regression`. Regenerate it (after a
//! deliberate format change only) with
//! `KDCACHE_WRITE_CORPUS=1 cargo test --no-default-features --test corrupt -- --ignored write_corpus`.
use std::path::{Path, PathBuf};

use kdcache::data::array::{self, ArrayDtype, MappedArray};

use crate::damage::*;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// One row of the corpus README's table.
#[derive(Debug)]
struct Entry {
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
fn corpus_expectations() -> Vec<Entry> {
    let readme = std::fs::read_to_string(corpus_dir().join("README.md")).expect("tests/corpus/README.md");
    let mut out = vec![];
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let entry = cells[1].trim_matches('`').trim_end_matches('/').to_string();
        let contains = cells[4].split('`').skip(1).step_by(2).map(String::from).collect();
        out.push(Entry { entry, check: cells[2].to_string(), kind: parse_kind(cells[3]), contains });
    }
    out
}

#[test]
fn corpus_regression() {
    let exp = corpus_expectations();
    assert!(exp.len() >= 20, "the corpus README lists only {} entries", exp.len());
    // every entry on disk is listed, and every listed entry exists
    let mut on_disk: Vec<String> =
        std::fs::read_dir(corpus_dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).filter(|n| n != "README.md").collect();
    on_disk.sort();
    let mut listed: Vec<String> = exp.iter().map(|e| e.entry.clone()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/corpus and its README disagree");
    let total: u64 = walk_size(&corpus_dir());
    assert!(total < 200 * 1024, "the corpus has grown to {total} bytes");

    for x in &exp {
        let path = corpus_dir().join(&x.entry);
        let case = format!("corpus {}", x.entry);
        let got: Outcome<()> = match x.check.as_str() {
            "cache" => outcome(&path, &case).map(|_| ()),
            "npy" => no_panic(&case, || at_open(MappedArray::open_npy(&path))).map(|_| ()),
            "manifest" => at_open(kdcache::format::Manifest::load(&path)).map(|_| ()),
            other => panic!("{case}: unknown check {other:?}"),
        };
        match (x.kind, got) {
            (None, Ok(())) => {}
            (None, Err((st, e))) => panic!("{case}: expected Ok, failed at {st:?}: {e}"),
            (Some(k), got) => {
                judge(got, &Expect::err(k).naming(&x.contains), &case);
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
    let s = RowSpec {
        classes: 20,
        k: 4,
        temperatures: vec![1.0, 2.0],
        tail_samples: 0,
        aug_dim: 0,
        logit_dtype: LogitDtype::F16,
        tail_logit: true,
        mixture: false,
    };
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
    add(
        "kds-flipped-chunk-byte/",
        "cache",
        "Corrupt",
        &["shard-00000.kds", "block 0, column topk_logit", "checksum mismatch"],
        "one bit of a compressed column chunk flipped; manifest rehashed, so the chunk checksum must catch it",
    );

    let d = cache("kds-flipped-chunk-byte-manifest-stale", Encoding::Kds, &none);
    modify(&d.join("shard-00001.kds"), |b| {
        let lay = KdsLayout::of(b);
        let r = lay.chunks()[0].2.clone();
        b[r.start + 1] ^= 0x01;
    });
    add(
        "kds-flipped-chunk-byte-manifest-stale/",
        "cache",
        "Corrupt",
        &["shard-00001.kds", "checksum"],
        "a chunk byte flipped, manifest untouched: verify's whole-file checksum catches it",
    );

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
    edit_manifest(&d, |m| m["format_version"] = json!(4));
    add("manifest-newer-version/", "cache", "Version", &["format version 5 is newer", "(4)"], "manifest format_version 5");

    let d = cache("manifest-wrong-xxh3", Encoding::Kds, &none);
    edit_manifest(&d, |m| {
        let h = u64::from_str_radix(m["shards"][1]["xxh3"].as_str().unwrap(), 16).unwrap();
        m["shards"][1]["xxh3"] = json!(format!("{:016x}", h ^ 0x10));
    });
    add("manifest-wrong-xxh3/", "cache", "Corrupt", &["shard-00001.kds", "checksum"], "shard 1's recorded XXH3 is off by one bit (opens, fails verify)");

    let d = cache("manifest-shards-gap", Encoding::Kds, &none);
    edit_manifest(&d, |m| m["shards"][1]["first_row"] = json!(17));
    add(
        "manifest-shards-gap/",
        "cache",
        "Corrupt",
        &["manifest.json", "starts at row 17, expected 16"],
        "shard 1 starts at row 17: the shards do not tile the rows",
    );

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
    add(
        "row-unsorted-logits/",
        "cache",
        "Corrupt",
        &["shard-00000.kds", "cache row 5", "ranks not sorted"],
        "row 5's top-K logits are not in descending order (written through the writer)",
    );

    cache("row-repeated-id", Encoding::Parquet, &|b| b.topk_idx[18 * 4 + 3] = b.topk_idx[18 * 4]);
    add(
        "row-repeated-id/",
        "cache",
        "Corrupt",
        &["shard-00001.parquet", "cache row 18", "appears twice"],
        "row 18 names one class twice in topk_idx (Parquet)",
    );

    let d = cache("parquet-truncated", Encoding::Parquet, &none);
    modify(&d.join("shard-00000.parquet"), |b| b.truncate(b.len() / 2));
    rehash(&d);
    add("parquet-truncated/", "cache", "Corrupt", &["shard-00000.parquet"], "shard 0 cut in half");

    let d = cache("parquet-wrong-schema", Encoding::Parquet, &none);
    edit_manifest(&d, |m| m["logit_dtype"] = json!("f32"));
    add("parquet-wrong-schema/", "cache", "Corrupt", &["shard-00000.parquet"], "the shards store f16 logits, the manifest says f32");

    let d = cache("parquet-flipped-byte", Encoding::Parquet, &none);
    modify(&d.join("shard-00000.parquet"), |b| b[100] ^= 0x08);
    add(
        "parquet-flipped-byte/",
        "cache",
        "Corrupt",
        &["shard-00000.parquet", "checksum"],
        "a data byte flipped, manifest untouched: verify's whole-file checksum catches it",
    );

    // npy files
    let z: Vec<f32> = (0..12).map(|x| x as f32 / 4.0).collect();
    let good = root.join("npy-tmp.npy");
    array::write_npy(&good, ArrayDtype::F32, &[3, 4], bytemuck::cast_slice(&z)).unwrap();
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
    let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4), }";
    std::fs::write(root.join("npy-shape-overflow.npy"), npy_bytes(1, h, 64, 0, &[])).unwrap();
    add("npy-shape-overflow.npy", "npy", "Corrupt", &["overflows"], "shape (2³², 2³², 4): its element count overflows");

    // a lone manifest
    let m = root.join("manifest-not-kdcache.json");
    std::fs::write(&m, br#"{"format": "something-else", "format_version": 1}"#).unwrap();
    add("manifest-not-kdcache.json", "manifest", "Corrupt", &["not a kdcache manifest"], "`Manifest::load` on a JSON file of another format");

    let mut readme = String::from(
        "# Corrupt-file corpus\n\n\
         A static regression set of damaged caches and input files, replayed by `corpus_regression` in\n\
         `tests/corrupt/`. Each row below is parsed by that test: the entry, how it is checked, the\n\
         `kdcache::ErrorKind` expected (`Ok` for the controls), and substrings the error message must contain.\n\n\
         Checks: `cache` = `CacheReader::open`, then `verify(None)`, then reading every row; `npy` =\n\
         `MappedArray::open_npy`; `manifest` = `Manifest::load`. Caches are tiny: C = 20, K = 4, T = [1, 2], f16 logits,\n\
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
