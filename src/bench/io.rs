//! Cache I/O: write, scan and block-shuffled reads of both encodings, and pyarrow on the same Parquet
//! files.
use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use serde::Serialize;

use crate::error::Result;

#[derive(Debug, Clone, Serialize)]
pub struct IoRow {
    pub encoding: String,
    pub rows: usize,
    pub bytes_per_row: f64,
    pub write_rows_per_s: f64,
    /// Full sequential scan into columnar batches, 2 prefetch workers.
    pub scan_rows_per_s: f64,
    /// Block-shuffled scan (blocks in random order, rows permuted within blocks).
    pub shuffled_rows_per_s: f64,
    /// `verify`: whole-file checksums, every block decoded and every row checked (rayon threads).
    pub verify_rows_per_s: f64,
    /// pyarrow reading the same Parquet files into numpy arrays (null if no pyarrow).
    pub pyarrow_rows_per_s: Option<f64>,
}

/// The shape of [`realistic_rows`]: f16 logits, T = 1, 2, 4, no tail samples or augmentation.
pub fn realistic_spec(classes: u32, k: usize) -> crate::format::RowSpec {
    crate::format::RowSpec {
        classes: classes as u64,
        k,
        temperatures: vec![1.0, 2.0, 4.0],
        tail_samples: 0,
        aug_dim: 0,
        logit_dtype: crate::format::LogitDtype::F16,
        tail_logit: true,
        mixture: false,
    }
}

/// Rows that look like a real teacher's: a true class, its superclass neighbours and near-by classes
/// ranked first, logits falling with exponential gaps, consistent normalisers. No two rows repeat.
pub fn realistic_rows(n: usize, classes: u32, k: usize, seed: u64) -> crate::format::RowBatch {
    use rand::Rng;
    let mut b = crate::format::RowBatch::new(&realistic_spec(classes, k));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ids: Vec<u32> = Vec::with_capacity(k);
    for i in 0..n {
        let c = rng.random_range(0..classes);
        ids.clear();
        ids.push(c);
        let mut misses = 0;
        while ids.len() < k {
            // superclass mates first, then classes at geometric distances, then anywhere (also once
            // the nearer pools run dry: the last superclass may hold fewer than 7 classes)
            let j = match ids.len() {
                _ if misses > 100 => rng.random_range(0..classes),
                1..=6 => (c / 10 * 10 + rng.random_range(0..10)).min(classes - 1),
                7..=32 => ((c as i64 + (rng.random::<f64>().powi(3) * 2000.0 - 1000.0) as i64).rem_euclid(classes as i64)) as u32,
                _ => rng.random_range(0..classes),
            };
            if ids.contains(&j) {
                misses += 1;
            } else {
                ids.push(j);
            }
        }
        let mut z = 12.0 + 2.0 * (rng.random::<f64>() - 0.5) * 2.0;
        let mut zs = Vec::with_capacity(k);
        for _ in 0..k {
            zs.push(half::f16::from_f64(z).to_f64());
            z -= -(rng.random::<f64>().max(1e-9)).ln() * 0.4;
        }
        let tail_z = z - 1.0; // the tail sits below the K-th logit
        let (mut lse, mut log_tail) = (vec![], vec![]);
        for t in [1.0f64, 2.0, 4.0] {
            let head: f64 = zs.iter().map(|&v| (v / t).exp()).sum();
            let tail = (classes as f64 - k as f64) * (tail_z / t).exp() * 0.01;
            let total = head + tail;
            lse.push(total.ln() as f32);
            log_tail.push((tail / total).ln() as f32);
        }
        let logits: Vec<f32> = zs.iter().map(|&v| v as f32).collect();
        b.push_row(i as u64, 0, c as i64, &ids, &logits, &lse, &log_tail, None);
    }
    b
}

/// Section 3: cache I/O for both encodings, and pyarrow on the same Parquet files.
pub fn io(rows: usize, dir: &Path) -> Result<Vec<IoRow>> {
    use crate::format::{CacheWriter, Encoding, Order, Signature, WriterOptions};
    let batch = realistic_rows(rows, 131072, 64, 1);
    let spec = realistic_spec(131072, 64);
    let mut out = vec![];
    for enc in [Encoding::Kds, Encoding::Parquet] {
        let cdir = dir.join(format!("io_{}", enc.ext()));
        let t0 = Instant::now();
        let mut w = CacheWriter::create(&cdir, &spec, Signature::default(), WriterOptions { encoding: enc, overwrite: true, ..Default::default() }, None)?;
        w.push(&batch, None)?;
        let m = w.finish(rows as u64, 1, "kdcache bench")?;
        let write = rows as f64 / t0.elapsed().as_secs_f64();
        let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
        let reader = std::sync::Arc::new(crate::format::CacheReader::open(&cdir)?);
        let scan = |order: Order| -> Result<f64> {
            let t = Instant::now();
            let mut n = 0;
            for b in reader.batches(order, 2) {
                n += b?.len();
            }
            Ok(n as f64 / t.elapsed().as_secs_f64())
        };
        let _ = scan(Order::Sequential)?; // warm the page cache
        let seq = scan(Order::Sequential)?;
        let shuf = scan(Order::Shuffled { seed: 1 })?;
        let t = Instant::now();
        let checked = reader.verify(None)?.rows;
        let verify = checked as f64 / t.elapsed().as_secs_f64();
        let py = if enc == Encoding::Parquet { pyarrow_scan(&cdir, rows) } else { None };
        out.push(IoRow {
            encoding: enc.ext().into(),
            rows,
            bytes_per_row: bytes as f64 / rows as f64,
            write_rows_per_s: write,
            scan_rows_per_s: seq,
            shuffled_rows_per_s: shuf,
            verify_rows_per_s: verify,
            pyarrow_rows_per_s: py,
        });
    }
    Ok(out)
}

fn pyarrow_scan(dir: &Path, rows: usize) -> Option<f64> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = format!(
        "import glob, time, numpy as np, pyarrow.parquet as pq\nfiles = sorted(glob.glob('{}/shard-*.parquet'))\nfor _ in range(2):\n    t = time.time(); n = 0\n    for f in files:\n        tb = pq.read_table(f)\n        cols = {{c: (tb.column(c).combine_chunks().flatten() if c in ('topk_idx','topk_logit','lse','log_tail') else tb.column(c)).to_numpy() for c in tb.column_names}}\n        n += tb.num_rows\n    dt = time.time() - t\nassert n == {rows}\nprint(n / dt)",
        dir.display()
    );
    let o = std::process::Command::new(py).args(["-c", &script]).output().ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn realistic_rows_are_valid_even_when_the_last_superclass_is_small() {
        // 13 classes: the last superclass holds 3, fewer than the 7 superclass mates asked for
        let spec = super::realistic_spec(13, 12);
        let b = super::realistic_rows(2000, 13, 12, 7);
        assert_eq!(b.len(), 2000);
        let mut checker = crate::format::rows::RowChecker::new(&spec);
        for r in 0..b.len() {
            checker.check(b.get(r)).unwrap_or_else(|e| panic!("row {r}: {e}"));
        }
    }
}
