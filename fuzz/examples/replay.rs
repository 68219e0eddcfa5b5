//! Replays fuzz inputs without libFuzzer or nightly: `cargo run --release --manifest-path
//! fuzz/Cargo.toml --example replay -- <kds_shard|parquet_shard|manifest|npy> FILE...`; prints each
//! reader's answer and how long it took (a panic propagates, as in the fuzz target).
use std::time::Instant;

use kdcache::data::array::MappedArray;
use kdcache::format::Manifest;
use kdcache::format::kds::KdsShard;
use kdcache::format::parquet::ParquetShard;
use kdcache_fuzz::{BLOCK_ROWS, ROWS, check_rows, spec};

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("target name");
    for file in args {
        let path = std::path::Path::new(&file);
        let t = Instant::now();
        let spec = spec();
        let answer = match target.as_str() {
            "kds_shard" => KdsShard::open(path, &spec, ROWS).and_then(|s| {
                for b in 0..s.num_blocks() {
                    check_rows(&s.read_block(b)?, &spec);
                }
                Ok(format!("{} blocks", s.num_blocks()))
            }),
            "parquet_shard" => ParquetShard::open(path, &spec, ROWS, BLOCK_ROWS).and_then(|s| {
                for b in 0..s.num_blocks() {
                    check_rows(&s.read_block(b)?, &spec);
                }
                Ok(format!("{} row groups", s.num_blocks()))
            }),
            "manifest" => Manifest::load(path).map(|m| format!("{} rows in {} shards", m.rows, m.shards.len())),
            "npy" => MappedArray::open_npy(path).map(|a| format!("{:?} {:?}", a.dtype, a.shape)),
            other => panic!("unknown target {other}"),
        };
        let took = t.elapsed();
        match answer {
            Ok(s) => println!("{file}: ok ({s}) in {took:.2?}"),
            Err(e) => println!("{file}: {:?}: {e} in {took:.2?}", e.kind()),
        }
    }
}
