//! A Parquet shard of hostile bytes, opened against a fixed manifest shape; every row group decoded
//! and checked.
#![no_main]
use kdcache::ErrorKind;
use kdcache::format::parquet::{ParquetShard, in_guard};
use kdcache_fuzz::{BLOCK_ROWS, ROWS, check_kind, check_rows, input_file, specs};
use libfuzzer_sys::fuzz_target;

/// libfuzzer-sys aborts on every panic, even one that is caught. kdcache runs the parquet crate under
/// `catch_unwind` (src/format/parquet.rs) and reports its panics on damaged data as Corrupt, so let
/// those unwind to kdcache's guard; any other panic still aborts (a finding).
fn let_guarded_panics_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !in_guard() {
                fuzzer_hook(info)
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_guarded_panics_unwind();
    let path = input_file("shard-00000.parquet", data);
    for spec in specs() {
        match ParquetShard::open(&path, &spec, ROWS, BLOCK_ROWS) {
            Err(e) => check_kind(&e, &[ErrorKind::Corrupt], &path),
            Ok(s) => {
                for b in 0..s.num_blocks() {
                    match s.read_block(b) {
                        Ok(batch) => {
                            assert_eq!(batch.len(), s.block_len(b));
                            check_rows(&batch, &spec);
                        }
                        Err(e) => check_kind(&e, &[ErrorKind::Corrupt], &path),
                    }
                }
            }
        }
    }
});
