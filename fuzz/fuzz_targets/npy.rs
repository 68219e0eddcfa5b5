//! A `.npy` file of hostile bytes: `MappedArray::open_npy` must refuse it (Corrupt or Invalid) or give an array
//! whose data matches its shape, readable the way kdcache's callers read it.
#![no_main]
use kdcache::ErrorKind;
use kdcache::data::array::{ArrayDtype, MappedArray};
use kdcache_fuzz::{check_kind, input_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = input_file("input.npy", data);
    match MappedArray::open_npy(&path) {
        Err(e) => check_kind(&e, &[ErrorKind::Corrupt, ErrorKind::Invalid], &path),
        Ok(a) => {
            let count: usize = a.shape.iter().product();
            assert_eq!(a.data().len(), count * a.dtype.width());
            match a.dtype {
                ArrayDtype::F32 | ArrayDtype::F16 if !a.shape.is_empty() => {
                    let mut out = vec![];
                    a.f32_rows(0..a.shape[0], &mut out);
                    assert_eq!(out.len(), count);
                }
                ArrayDtype::I64 | ArrayDtype::I32 => assert_eq!(a.i64_values().len(), count),
                _ => {}
            }
        }
    }
});
