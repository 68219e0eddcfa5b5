//! Input data: `.npy` arrays (and, with the cache phase, other tensor formats and the synthetic generator).
pub mod npy;
pub mod source;
pub mod synth;
