//! Cache format v1 (`schemas/`): rows, manifest, the kds and Parquet encodings, writer and reader.
//! Nothing here needs libtorch.
pub mod columns;
pub mod kds;
pub mod manifest;
pub mod merge;
pub mod parquet;
pub mod reader;
pub mod rows;
pub mod writer;

pub use manifest::{Encoding, Manifest, Signature};
pub use reader::{CacheReader, Order};
pub use rows::{LogitDtype, RowBatch, RowSpec, Tail};
pub use writer::{CacheWriter, WriterOptions};
