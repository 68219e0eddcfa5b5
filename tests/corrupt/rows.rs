//! Rows read back: valid caches in every encoding and logit type, and bad rows (written through the
//! writer, so every checksum holds) that `verify` must name.
use crate::damage::*;

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

/// Row `i`'s top-K logits (K = 8) rewritten by `f`, in the batch's logit type.
fn edit_logits(b: &mut RowBatch, i: usize, f: impl FnOnce(&mut [f32])) {
    let mut v = b.topk_logit.to_f32();
    f(&mut v[i * 8..i * 8 + 8]);
    let mut l = kdcache::format::rows::Logits::new(b.topk_logit.dtype());
    v.into_iter().for_each(|x| l.push(x));
    b.topk_logit = l;
}

#[test]
fn bad_rows_are_named_by_verify() {
    type Damage = fn(&mut RowBatch, usize);
    let cases: Vec<(&str, usize, Damage, &str)> = vec![
        // ranks 0 and 3 swapped
        ("unsorted logits", 77, |b, i| edit_logits(b, i, |r| (r[0], r[3]) = (r[3] - 1.0, r[0] + 1.0)), "ranks not sorted"),
        ("repeated class id", 200, |b, i| b.topk_idx[i * 8 + 5] = b.topk_idx[i * 8 + 2], "appears twice"),
        ("class id >= C", 5, |b, i| b.topk_idx[i * 8 + 7] = 50, "is not < C"),
        ("tail mass off", 150, |b, i| b.log_tail[i * 2 + 1] = (b.log_tail[i * 2 + 1].exp() + 0.2).ln(), "disagree"),
        ("lse off", 299, |b, i| b.lse[i * 2] += 0.5, "disagree"),
        ("positive log tail", 128, |b, i| b.log_tail[i * 2] = 0.5, "log-probability"),
        ("NaN lse", 64, |b, i| b.lse[i * 2 + 1] = f32::NAN, "not finite"),
        ("infinite logit", 0, |b, i| edit_logits(b, i, |r| r[0] = f32::INFINITY), "not finite"),
    ];
    for enc in ENCODINGS {
        for (name, row, damage, what) in &cases {
            let (t, _) = base_with(enc, LogitDtype::F16, ROWS, BLOCK_ROWS, SHARD_ROWS, |b| damage(b, *row));
            let want = Expect::err(ErrorKind::Corrupt).at(Stage::Verify).naming([
                format!("cache row {row}"),
                what.to_string(),
                format!("shard-0000{}", row / SHARD_ROWS),
            ]);
            expect_err(t.path(), &want, &format!("{enc:?}: {name} in row {row}"));
        }
    }
}
