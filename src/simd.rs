//! `simd!`: a kernel call compiled for AVX2 where the CPU has it (the host loops of `rowopt` and of the
//! `dis` positives; the crate's build targets baseline x86-64, SSE2).

/// Evaluates a call to an `#[inline(always)]` kernel compiled for AVX2 where the CPU has it (8 lanes
/// instead of SSE2's 4; no fused multiply-add, so the same arithmetic and the same bits either way).
macro_rules! simd {
    ($call:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked above)
                unsafe { avx2(|| $call) }
            } else {
                $call
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $call
        }
    }};
}
