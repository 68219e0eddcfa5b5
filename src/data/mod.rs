//! Input data: `.npy` arrays (and, with the cache phase, other tensor formats and the synthetic generator).
pub mod npy;
