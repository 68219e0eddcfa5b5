//! Cache I/O with criterion: write and full-scan throughput of kds and Parquet shards for rows shaped
//! like a real teacher's (C = 131072, K = 64, f16 logits). `KDCACHE_BENCH_ROWS` sets the row count
//! (default 200,000); `kdcache bench` reports the same figures at 1M rows with bytes/row and pyarrow.
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kdcache::format::{CacheReader, CacheWriter, Encoding, LogitDtype, Order, RowSpec, Signature, WriterOptions};

fn rows() -> usize {
    std::env::var("KDCACHE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

fn bench(c: &mut Criterion) {
    let n = rows();
    let batch = kdcache::bench::realistic_rows(n, 131072, 64, 1);
    let spec = RowSpec {
        classes: 131072,
        k: 64,
        temperatures: vec![1.0, 2.0, 4.0],
        tail_samples: 0,
        aug_dim: 0,
        logit_dtype: LogitDtype::F16,
        tail_logit: true,
        mixture: false,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("cache_io");
    g.sample_size(10).throughput(Throughput::Elements(n as u64));
    for enc in [Encoding::Kds, Encoding::Parquet] {
        let out = dir.path().join(enc.ext());
        let write = || {
            let mut w = CacheWriter::create(&out, &spec, Signature::default(), WriterOptions { encoding: enc, overwrite: true, ..Default::default() }, None)
                .expect("writer");
            w.push(&batch, None).expect("push");
            w.finish(n as u64, 1, "bench").expect("finish")
        };
        let m = write();
        eprintln!("{}: {:.1} bytes/row", enc.ext(), m.shards.iter().map(|s| s.bytes).sum::<u64>() as f64 / n as f64);
        g.bench_function(format!("write_{}", enc.ext()), |b| b.iter(write));
        let reader = Arc::new(CacheReader::open(&out).expect("open"));
        for (name, order) in [("scan", Order::Sequential), ("shuffled", Order::Shuffled { seed: 1 })] {
            g.bench_function(format!("{name}_{}", enc.ext()), |b| b.iter(|| reader.batches(order, 2).map(|r| r.expect("block").len()).sum::<usize>()));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
