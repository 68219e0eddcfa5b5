//! kdcache: cache a teacher's ranked logits once, then distill students from the cache with
//! dynamically importance-sampled classes. See `schemas/FORMAT.md` for the cache format.
#[macro_use]
mod simd;
#[cfg(feature = "torch")]
pub mod bench;
pub mod data;
pub mod error;
pub mod fingerprint;
pub mod format;
pub mod fsio;
pub mod import;
#[cfg(feature = "torch")]
pub mod nn;
pub mod progress;
pub mod rank;
pub mod report;
pub mod rowopt;
pub mod run;
pub mod sample;
#[cfg(feature = "torch")]
pub mod teacher;
#[cfg(feature = "torch")]
pub mod train;

pub use error::{Error, ErrorKind, Result};
