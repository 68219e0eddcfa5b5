//! Damaged caches and input files: every reader must answer with an error of the right kind (naming the
//! file, and the block or row where known), never with a panic or with wrong rows.
//!
//! Cases are derived at run time from small valid caches, one module per encoding or subject; every
//! case goes through the one loop in `damage` (copy, damage, rehash if asked, open / verify / read,
//! expect). A few of them are also kept as a static corpus in `tests/corpus/` (listed, with their
//! expected errors, in `tests/corpus/README.md`) that `corpus::corpus_regression` replays. Regenerate it
//! with `KDCACHE_WRITE_CORPUS=1 cargo test --no-default-features --test corrupt -- --ignored write_corpus`.
//! The fuzz targets' seeds are written beside it (`seeds::write_fuzz_seeds`, run by `tools/fuzz.sh`).
#[path = "../cachegen/mod.rs"]
mod cachegen;
#[path = "../../fuzz/src/shape.rs"]
#[allow(dead_code)] // `specs` serves the fuzz targets only
mod fuzz_shape;

mod damage;

mod corpus;
mod import;
mod kds;
mod manifest;
mod npy;
mod parquet;
mod rows;
mod seeds;
mod shards;
