//! Property: whatever the row shape (K, T, M, aug_dim, dtype), encoding and block/shard sizes, the rows
//! read back from a cache equal the rows written (for f16/bf16, the values after conversion: a
//! `RowBatch` holds logits in the storage dtype), through `get_rows`, prefetched `batches` in either
//! order, and every block; and valid rows pass `verify`.
mod cachegen;

use std::sync::Arc;

use cachegen::{random_rows, write_cache};
use kdcache::format::{CacheReader, Encoding, LogitDtype, Order, RowBatch, RowSpec};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    spec: RowSpec,
    encoding: Encoding,
    block_rows: usize,
    shard_rows: usize,
    rows: usize,
    seed: u64,
    /// `get_rows` sub-ranges to check, as fractions of the row count.
    ranges: Vec<(f64, f64)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..=8,                                 // K
        0u64..=40,                                  // C - K
        prop::collection::vec(0.25f32..8.0, 1..=4), // temperatures
        prop_oneof![Just(0usize), 1usize..=5],      // M
        prop_oneof![Just(0usize), 1usize..=4],      // aug_dim
        prop_oneof![Just(LogitDtype::F16), Just(LogitDtype::Bf16), Just(LogitDtype::F32)],
        prop_oneof![Just(Encoding::Kds), Just(Encoding::Parquet)],
        1usize..=20,                                      // block_rows
        1usize..=50,                                      // shard_rows
        prop_oneof![1 => Just(0usize), 9 => 1usize..=90], // rows
        any::<u64>(),
        prop::collection::vec((0.0f64..=1.0, 0.0f64..=1.0), 1..4),
    )
        .prop_map(|(k, extra, temperatures, m, aug, dtype, encoding, block_rows, shard_rows, rows, seed, ranges)| Case {
            // a third of the cases without tail samples hold an ensemble's mixture (format 4)
            spec: RowSpec {
                classes: k as u64 + extra,
                k,
                temperatures,
                tail_samples: m,
                aug_dim: aug,
                logit_dtype: dtype,
                tail_logit: true,
                mixture: m == 0 && seed % 3 == 0,
            },
            encoding,
            block_rows,
            shard_rows,
            rows,
            seed,
            ranges,
        })
}

fn concat(spec: &RowSpec, parts: impl IntoIterator<Item = RowBatch>) -> RowBatch {
    let mut out = RowBatch::new(spec);
    for b in parts {
        out.extend_rows(&b, 0..b.len());
    }
    out
}

fn run(c: &Case) -> Result<(), TestCaseError> {
    let t = tempfile::tempdir().unwrap();
    let (rows, prior) = random_rows(&c.spec, c.rows, c.seed);
    let m = write_cache(t.path(), &c.spec, c.encoding, c.block_rows, c.shard_rows, &rows, Some(&prior));
    prop_assert_eq!(m.rows, c.rows as u64);
    prop_assert_eq!(m.shards.len(), c.rows.div_ceil(c.shard_rows));
    prop_assert_eq!(m.spec(), c.spec.clone());

    let r = CacheReader::open(t.path()).map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
    prop_assert_eq!(r.rows(), c.rows as u64);
    let report = r.verify(None).map_err(|e| TestCaseError::fail(format!("verify: {e}")))?;
    prop_assert_eq!(report.rows, c.rows as u64);

    // block layout: every block within block_rows, blocks tiling the rows in order
    let mut next = 0u64;
    for (i, b) in r.blocks().iter().enumerate() {
        prop_assert!(b.rows >= 1 && b.rows <= c.block_rows, "block {} has {} rows", i, b.rows);
        prop_assert_eq!(b.first_row, next);
        next += b.rows as u64;
        let got = r.read_block(i).map_err(|e| TestCaseError::fail(format!("block {i}: {e}")))?;
        prop_assert_eq!(&got, &rows.slice(b.first_row as usize..next as usize), "block {}", i);
    }
    prop_assert_eq!(next, c.rows as u64);

    // get_rows: everything, and sub-ranges
    let all = r.get_rows(0..c.rows as u64).map_err(|e| TestCaseError::fail(format!("get_rows: {e}")))?;
    prop_assert_eq!(&all, &rows);
    for &(a, b) in &c.ranges {
        let (a, b) = ((a * c.rows as f64) as u64, (b * c.rows as f64) as u64);
        let (lo, hi) = (a.min(b), a.max(b));
        let got = r.get_rows(lo..hi).map_err(|e| TestCaseError::fail(format!("get_rows({lo}..{hi}): {e}")))?;
        prop_assert_eq!(&got, &rows.slice(lo as usize..hi as usize), "rows {}..{}", lo, hi);
    }
    prop_assert!(r.get_rows(0..c.rows as u64 + 1).is_err());

    // prefetched batches, sequential: the rows in order, with 0 and 2 workers
    let r = Arc::new(r);
    for w in [0, 2] {
        let parts: Result<Vec<RowBatch>, _> = r.batches(Order::Sequential, w).collect();
        let got = concat(&c.spec, parts.map_err(|e| TestCaseError::fail(format!("batches: {e}")))?);
        prop_assert_eq!(&got, &rows, "sequential, {} workers", w);
    }
    // shuffled: a permutation of the rows, the same for any worker count
    let shuffled = |w| -> Result<RowBatch, TestCaseError> {
        let parts: Result<Vec<RowBatch>, _> = r.batches(Order::Shuffled { seed: c.seed }, w).collect();
        Ok(concat(&c.spec, parts.map_err(|e| TestCaseError::fail(format!("shuffled batches: {e}")))?))
    };
    let s0 = shuffled(0)?;
    prop_assert_eq!(&s0, &shuffled(3)?);
    let mut order: Vec<usize> = (0..s0.len()).collect();
    order.sort_by_key(|&i| s0.row[i]); // `row` is the example index, 0..n, unique here
    prop_assert_eq!(&s0.permuted(&order), &rows);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]
    #[test]
    fn write_then_read_gives_the_same_rows(c in case()) {
        run(&c)?;
    }
}

/// The corners the random cases may miss: one row per block and shard, one block per shard, K = C.
#[test]
fn corner_cases() {
    let mut n = 0;
    for encoding in [Encoding::Kds, Encoding::Parquet] {
        for dtype in [LogitDtype::F16, LogitDtype::Bf16, LogitDtype::F32] {
            for (k, classes, block_rows, shard_rows, rows) in [(1, 1, 1, 1, 3), (5, 5, 7, 7, 7), (3, 10, 4, 1000, 9), (2, 30, 1000, 4, 9), (4, 9, 3, 5, 0)] {
                let spec =
                    RowSpec { classes, k, temperatures: vec![1.0, 0.5], tail_samples: 2, aug_dim: 1, logit_dtype: dtype, tail_logit: true, mixture: false };
                let c = Case { spec, encoding, block_rows, shard_rows, rows, seed: n, ranges: vec![(0.1, 0.9)] };
                run(&c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
                n += 1;
            }
        }
    }
}

/// Regression: the blocks of one Parquet shard decoded by several threads at once (`verify`'s rayon
/// loop, prefetch workers). Reading every block through a `try_clone()` of one `File` (one shared seek
/// position) made valid caches fail with "EOF: Invalid page header" (fixed in d87236f); the proptest
/// above found it (tests/roundtrip.proptest-regressions keeps those cases).
#[test]
fn parquet_blocks_read_concurrently() {
    let t = tempfile::tempdir().unwrap();
    let spec = RowSpec {
        classes: 40,
        k: 6,
        temperatures: vec![1.0, 2.0],
        tail_samples: 2,
        aug_dim: 1,
        logit_dtype: LogitDtype::F16,
        tail_logit: true,
        mixture: false,
    };
    let (rows, prior) = random_rows(&spec, 2000, 3);
    write_cache(t.path(), &spec, Encoding::Parquet, 10, 2000, &rows, Some(&prior));
    let r = Arc::new(CacheReader::open(t.path()).unwrap());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    for round in 0..5 {
        pool.install(|| r.verify(None)).unwrap_or_else(|e| panic!("verify, round {round}: {e}"));
        let parts: Result<Vec<RowBatch>, _> = r.batches(Order::Sequential, 4).collect();
        let got = concat(&spec, parts.unwrap_or_else(|e| panic!("batches, round {round}: {e}")));
        assert_eq!(got, rows, "round {round}");
    }
}
