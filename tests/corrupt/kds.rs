//! Damaged kds shards: flipped chunk, header, footer and trailer bytes, consistent lies in the footer,
//! and garbage chunks with matching checksums.
use std::path::Path;

use kdcache::format::CacheReader;

use crate::damage::*;

#[test]
fn flipped_chunk_byte_fails_its_checksum() {
    let (t, _) = base(Encoding::Kds);
    // without fixing the manifest: verify's whole-file checksum catches it
    let lay = KdsLayout::of(&std::fs::read(shard(t.path(), 0)).unwrap());
    let first = lay.chunks()[0].2.clone();
    let want = Expect::err(ErrorKind::Corrupt).at(Stage::Verify).naming(["shard-00000.kds", "checksum"]);
    check(t.path(), "kds flipped chunk byte", false, shard_bytes(0, |b| b[first.start + first.len() / 2] ^= 0x10), &want);

    // with the manifest fixed: each chunk's own checksum catches it, naming block and column
    let lay = KdsLayout::of(&std::fs::read(shard(t.path(), 1)).unwrap());
    let names = ["row", "view", "label", "topk_idx", "topk_logit", "lse", "log_tail"];
    for (bi, ci, r) in lay.chunks() {
        for pos in [r.start, r.start + r.len() / 2, r.end - 1] {
            let case = format!("kds shard 1 block {bi} column {} byte {pos} flipped", names[ci]);
            let want = Expect::err(ErrorKind::Corrupt).at(Stage::Verify).naming([
                "shard-00001.kds",
                &format!("block {bi}, column {}", names[ci]),
                "checksum mismatch",
            ]);
            let (d, _) = check(t.path(), &case, true, shard_bytes(1, |b| b[pos] ^= 0x01), &want);
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
fn consistent_lies_in_the_footer_are_caught() {
    let (t, _) = base(Encoding::Kds);
    let cases: Vec<(&str, Stage, JsonEdit)> = vec![
        (
            "raw_len off by one",
            Stage::Open,
            Box::new(|f| {
                let v = f["blocks"][0]["columns"][3]["raw_len"].as_u64().unwrap();
                f["blocks"][0]["columns"][3]["raw_len"] = json!(v + 1);
            }),
        ),
        ("block of 0 rows", Stage::Open, Box::new(|f| f["blocks"][1]["rows"] = json!(0))),
        ("block larger than block_rows", Stage::Open, Box::new(|f| f["blocks"][0]["rows"] = json!(65))),
        (
            "a block dropped",
            Stage::Open,
            Box::new(|f| {
                f["blocks"].as_array_mut().unwrap().pop();
            }),
        ),
        (
            "chunk offset moved",
            Stage::Open,
            Box::new(|f| {
                let v = f["blocks"][0]["columns"][1]["offset"].as_u64().unwrap();
                f["blocks"][0]["columns"][1]["offset"] = json!(v + 1);
            }),
        ),
        (
            "chunk length grown",
            Stage::Open,
            Box::new(|f| {
                let v = f["blocks"][1]["columns"][6]["len"].as_u64().unwrap();
                f["blocks"][1]["columns"][6]["len"] = json!(v + 1);
            }),
        ),
        (
            "chunks swapped",
            Stage::Open,
            Box::new(|f| {
                let cols = f["blocks"][0]["columns"].as_array_mut().unwrap();
                cols.swap(0, 1);
            }),
        ),
        (
            "a column missing",
            Stage::Open,
            Box::new(|f| {
                f["blocks"][0]["columns"].as_array_mut().unwrap().pop();
            }),
        ),
        ("huge offset", Stage::Open, Box::new(|f| f["blocks"][0]["columns"][0]["offset"] = json!(u64::MAX))),
        ("huge length", Stage::Open, Box::new(|f| f["blocks"][0]["columns"][0]["len"] = json!(u64::MAX))),
        ("not a footer", Stage::Open, Box::new(|f| *f = json!({"blocks": "no"}))),
        (
            "wrong chunk checksum",
            Stage::Verify,
            Box::new(|f| {
                let v = f["blocks"][1]["columns"][4]["xxh3"].as_u64().unwrap();
                f["blocks"][1]["columns"][4]["xxh3"] = json!(v ^ 1);
            }),
        ),
    ];
    for (name, stage, edit) in &cases {
        let want = Expect::err(ErrorKind::Corrupt).at(*stage).naming(["shard-00000.kds"]);
        check(t.path(), name, true, |d: &Path| rewrite_kds_footer(&shard(d, 0), edit), &want);
    }
}

#[test]
fn garbage_frame_with_a_matching_checksum() {
    // a chunk replaced by bytes that are not zstd, or by a frame of the wrong length, with the footer
    // (and manifest) updated to match: decoding must fail cleanly
    let (t, _) = base(Encoding::Kds);
    let make = |payload: Vec<u8>, case: &str| {
        let replace_last_chunk = shard_bytes(2, |b| {
            let lay = KdsLayout::of(b);
            let (_, _, r) = lay.chunks().last().unwrap().clone(); // the last chunk sits just before the footer
            let mut fj = lay.footer_json.clone();
            let last = fj["blocks"].as_array().unwrap().len() - 1;
            let col = fj["blocks"][last]["columns"].as_array().unwrap().len() - 1;
            fj["blocks"][last]["columns"][col]["len"] = json!(payload.len());
            fj["blocks"][last]["columns"][col]["xxh3"] = json!(xxh3_64(&payload));
            b.truncate(r.start);
            b.extend_from_slice(&payload);
            append_kds_footer(b, &fj);
        });
        let want = Expect::err(ErrorKind::Corrupt).at(Stage::Verify).naming(["shard-00002.kds", "column log_tail"]);
        check(t.path(), case, true, replace_last_chunk, &want);
    };
    let raw = 44 * 2 * 4; // the last block: 44 rows of T = 2 f32 values
    make(b"definitely not zstd".to_vec(), "not zstd");
    make(zstd::bulk::compress(&vec![0u8; raw - 4], 3).unwrap(), "frame too short");
    make(zstd::bulk::compress(&vec![0u8; raw + 4], 3).unwrap(), "frame too long");
    make(vec![], "empty chunk");
}

#[test]
fn every_byte_flip_is_caught() {
    // flip each byte of a small shard (manifest rehashed, so the shard itself must catch it)
    let t = small(Encoding::Kds);
    let len = std::fs::metadata(shard(t.path(), 0)).unwrap().len() as usize;
    let mut caught = 0;
    for pos in 0..len {
        for mask in [0x01u8, 0x80] {
            let case = format!("kds byte {pos} of {len} ^ {mask:#x}");
            // a flip in the version field can make it a newer version
            let want = if (4..8).contains(&pos) { Expect::err(ErrorKind::Corrupt).or(ErrorKind::Version) } else { Expect::err(ErrorKind::Corrupt) };
            check(t.path(), &case, true, shard_bytes(0, |b| b[pos] ^= mask), &want);
            caught += 1;
        }
    }
    assert!(caught > 1000);
}

#[test]
fn header_and_version_bytes() {
    let (t, _) = base(Encoding::Kds);
    let cases: Vec<(&str, ErrorKind, BytesEdit)> = vec![
        ("bad magic", ErrorKind::Corrupt, Box::new(|b| b[0] = b'X')),
        ("version 2", ErrorKind::Version, Box::new(|b| b[4..8].copy_from_slice(&2u32.to_le_bytes()))),
        ("version 0", ErrorKind::Corrupt, Box::new(|b| b[4..8].copy_from_slice(&0u32.to_le_bytes()))),
        ("header length huge", ErrorKind::Corrupt, Box::new(|b| b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()))),
        (
            "header length beyond the file",
            ErrorKind::Corrupt,
            Box::new(|b| {
                let n = b.len() as u64;
                b[8..16].copy_from_slice(&n.to_le_bytes())
            }),
        ),
        (
            "header length short by one",
            ErrorKind::Corrupt,
            Box::new(|b| {
                let h = u64::from_le_bytes(b[8..16].try_into().unwrap());
                b[8..16].copy_from_slice(&(h - 1).to_le_bytes())
            }),
        ),
        (
            "header says f32",
            ErrorKind::Corrupt,
            Box::new(|b| {
                let i = b.windows(5).position(|w| w == b"\"f16\"").unwrap();
                b[i + 2..i + 4].copy_from_slice(b"32");
            }),
        ),
        (
            "header says k=9",
            ErrorKind::Corrupt,
            Box::new(|b| {
                let i = b.windows(5).position(|w| w == b"\"k\":8").unwrap();
                b[i + 4] = b'9';
            }),
        ),
        (
            "header column renamed",
            ErrorKind::Corrupt,
            Box::new(|b| {
                let i = b.windows(5).position(|w| w == b"\"lse\"").unwrap();
                b[i + 1] = b'L';
            }),
        ),
        ("header not UTF-8", ErrorKind::Corrupt, Box::new(|b| b[17] = 0xff)),
    ];
    for (name, kind, f) in &cases {
        let mut want = Expect::err(*kind).at(Stage::Open).naming(["shard-00000.kds"]);
        if *kind == ErrorKind::Version {
            want = want.naming(["version 2", "(1)"]);
        }
        for rehashed in [false, true] {
            check(t.path(), &format!("{name} (rehashed {rehashed})"), rehashed, shard_bytes(0, f), &want);
        }
    }
    // a flipped header byte without fixing the manifest is caught by open or by verify
    let lay = KdsLayout::of(&std::fs::read(shard(t.path(), 0)).unwrap());
    for pos in lay.header.clone() {
        check(t.path(), &format!("header byte {pos} flipped"), false, shard_bytes(0, |b| b[pos] ^= 0x01), &Expect::err(ErrorKind::Corrupt));
    }
}

/// The kds header bytes that hold `"block_rows":N`'s value: see `header_block_rows_must_match_manifest`.
fn block_rows_value(b: &[u8], header: &std::ops::Range<usize>) -> std::ops::Range<usize> {
    let key = b"\"block_rows\":";
    let at = header.start + b[header.clone()].windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let end = (at..header.end).find(|&i| !b[i].is_ascii_digit()).unwrap();
    at..end
}

/// FORMAT.md: readers must reject header JSON that "disagrees with the manifest". Regression: the kds
/// reader took `block_rows` from the shard header without comparing it with the manifest's, so a shard
/// whose header (and blocks) used another block size was accepted (now checked in `CacheReader::open`).
#[test]
fn header_block_rows_must_match_manifest() {
    let (t, _) = base(Encoding::Kds);
    let block_rows_65 = shard_bytes(0, |b| {
        let lay = KdsLayout::of(b);
        let r = block_rows_value(b, &lay.header);
        assert_eq!(&b[r.clone()], b"64");
        b[r.start + 1] = b'5'; // 64 -> 65
    });
    check(t.path(), "header block_rows 65, manifest 64", true, block_rows_65, &Expect::err(ErrorKind::Corrupt).at(Stage::Open));
}

#[test]
fn flipped_footer_and_trailer_bytes() {
    let (t, _) = base(Encoding::Kds);
    let b = std::fs::read(shard(t.path(), 2)).unwrap();
    let lay = KdsLayout::of(&b);
    let want = Expect::err(ErrorKind::Corrupt).at(Stage::Open).naming(["shard-00002.kds"]);
    for pos in lay.footer.start..b.len() {
        check(t.path(), &format!("kds footer/trailer byte {pos} of {} flipped", b.len()), true, shard_bytes(2, |b| b[pos] ^= 0x20), &want);
    }
}
