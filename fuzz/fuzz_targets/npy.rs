//! A `.npy` file of hostile bytes: `Npy::open` must refuse it (Corrupt or Invalid) or give an array
//! whose data matches its shape, readable the way kdcache's callers read it.
#![no_main]
use kdcache::ErrorKind;
use kdcache::data::npy::{Npy, NpyDtype};
use kdcache_fuzz::{check_kind, input_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = input_file("input.npy", data);
    match Npy::open(&path) {
        Err(e) => check_kind(&e, &[ErrorKind::Corrupt, ErrorKind::Invalid], &path),
        Ok(a) => {
            let count: usize = a.shape.iter().product();
            assert_eq!(a.data().len(), count * a.dtype.width());
            match a.dtype {
                NpyDtype::F32 | NpyDtype::F16 if !a.shape.is_empty() => {
                    let mut out = vec![];
                    a.f32_rows(0..a.shape[0], &mut out);
                    assert_eq!(out.len(), count);
                }
                NpyDtype::I64 | NpyDtype::I32 => assert_eq!(a.i64_values().len(), count),
                _ => {}
            }
        }
    }
});
