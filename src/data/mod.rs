//! Input data: mapped arrays (`.npy` files, safetensors tensors), datasets built from them, and the synthetic generator.
pub mod array;
pub mod augment;
pub mod source;
pub mod synth;
