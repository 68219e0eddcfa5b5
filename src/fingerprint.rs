//! Content fingerprints for cache signatures.
use std::path::Path;

use crate::error::Result;

/// `xxh3:<16 hex>` of a file's bytes (memory-mapped).
pub fn file(path: &Path) -> Result<String> {
    Ok(format!("xxh3:{:016x}", crate::fsio::file_xxh3(path)?))
}

/// `xxh3:<16 hex>` of bytes.
pub fn bytes(b: &[u8]) -> String {
    format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(b))
}
