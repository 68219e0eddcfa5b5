//! Damage common to both encodings: shards cut short or followed by extra bytes, shards or manifests
//! missing, and manifests whose row spec the shards do not share.
use std::path::Path;

use crate::damage::*;

#[test]
fn truncated_shards() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        let len = std::fs::metadata(shard(t.path(), 1)).unwrap().len() as usize;
        let mut cuts = vec![0, 1, 8, 15, 16, 39, len / 2, len - 100, len - 30, len - 24, len - 20, len - 8, len - 4, len - 1];
        if enc == Encoding::Kds {
            let lay = KdsLayout::of(&std::fs::read(shard(t.path(), 1)).unwrap());
            cuts.extend([
                lay.header.start + 3,
                lay.header.end - 1,
                lay.header.end + 5,
                lay.footer.start,
                (lay.footer.start + lay.footer.end) / 2,
                lay.footer.end - 1,
            ]);
        }
        let want = Expect::err(ErrorKind::Corrupt).at(Stage::Open).naming(["shard-00001"]);
        for cut in cuts {
            for rehashed in [false, true] {
                let case = format!("{enc:?} shard 1 cut to {cut} of {len} bytes (rehashed {rehashed})");
                check(t.path(), &case, rehashed, shard_bytes(1, |b| b.truncate(cut)), &want);
            }
        }
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
                // kds refuses bytes after the end magic when opening; a Parquet file is located from
                // its end, so the appended bytes break it too, or at least verify's size check
                let stage = if enc == Encoding::Kds || rehashed { Some(Stage::Open) } else { None };
                let want = Expect::err(ErrorKind::Corrupt).at(stage).naming(["shard-00000"]);
                check(t.path(), &format!("{enc:?}: {name} appended (rehashed {rehashed})"), rehashed, shard_bytes(0, |b| b.extend_from_slice(tail)), &want);
            }
        }
    }
}

#[test]
fn missing_files() {
    let io_at_open = |parts: &[&str]| Expect::err(ErrorKind::Io).at(Stage::Open).naming(parts);
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        for i in 0..3 {
            let (_, e) = check(
                t.path(),
                &format!("{enc:?}: shard {i} missing"),
                false,
                |d: &Path| std::fs::remove_file(shard(d, i)).unwrap(),
                &io_at_open(&[&format!("shard-0000{i}")]),
            );
            assert!(e.is_bad_input());
        }
        // the shard replaced by a directory
        let to_dir = |d: &Path| {
            let p = shard(d, 0);
            std::fs::remove_file(&p).unwrap();
            std::fs::create_dir(&p).unwrap();
        };
        check(t.path(), &format!("{enc:?} shard is a directory"), false, to_dir, &io_at_open(&["shard-00000"]));
        // no manifest
        let no_manifest = |d: &Path| std::fs::remove_file(d.join("_manifest.json")).unwrap();
        check(t.path(), "no manifest", false, no_manifest, &io_at_open(&["not a kdcache cache"]));
        // only a partial manifest: an unfinished build
        let unfinished = |d: &Path| {
            no_manifest(d);
            std::fs::write(d.join("_manifest.partial.json"), b"{}").unwrap();
        };
        check(t.path(), "unfinished build", false, unfinished, &io_at_open(&["did not finish"]));
    }
    let t = tempfile::tempdir().unwrap();
    expect_err(&t.path().join("nowhere"), &io_at_open(&[]), "no directory");
    std::fs::write(t.path().join("file"), b"x").unwrap();
    expect_err(&t.path().join("file"), &io_at_open(&[]), "a file, not a directory");
}

#[test]
fn spec_mismatch_between_manifest_and_shards() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        let cases: Vec<(&str, JsonEdit)> = vec![
            ("top_k 6", Box::new(|m| m["top_k"] = json!(6))),
            ("top_k 9", Box::new(|m| m["top_k"] = json!(9))),
            ("dtype f32", Box::new(|m| m["logit_dtype"] = json!("f32"))),
            ("dtype bf16", Box::new(|m| m["logit_dtype"] = json!("bf16"))),
            ("three temperatures", Box::new(|m| m["temperatures"] = json!([1.0, 2.0, 4.0]))),
            ("one temperature", Box::new(|m| m["temperatures"] = json!([1.0]))),
            ("tail samples", Box::new(|m| m["tail_samples"] = json!(3))),
            ("aug_dim", Box::new(|m| m["aug_dim"] = json!(2))),
            (
                "other encoding",
                Box::new(|m| {
                    m["encoding"] = json!(if m["encoding"] == "kds" { "parquet" } else { "kds" });
                }),
            ),
        ];
        // Parquet: list sizes (K, T) are only caught when a block is decoded, see
        // parquet::open_checks_list_sizes
        let stage = if enc == Encoding::Parquet { None } else { Some(Stage::Open) };
        let want = Expect::err(ErrorKind::Corrupt).at(stage).naming(["shard-00000"]);
        for (name, f) in &cases {
            check(t.path(), &format!("{enc:?} shards, manifest says {name}"), false, manifest_json(f), &want);
        }
    }
    // Parquet row groups larger than the manifest's block_rows
    let (t, _) = base(Encoding::Parquet);
    let want = Expect::err(ErrorKind::Corrupt).at(Stage::Open).naming(["row group 0"]);
    check(t.path(), "parquet block_rows 32", false, manifest_json(|m| m["block_rows"] = json!(32)), &want);
}
