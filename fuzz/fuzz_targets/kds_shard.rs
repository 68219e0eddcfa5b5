//! A kds shard of hostile bytes, opened against a fixed manifest shape; every block decoded and checked.
#![no_main]
use kdcache::ErrorKind;
use kdcache::format::kds::KdsShard;
use kdcache_fuzz::{BLOCK_ROWS, ROWS, check_kind, check_rows, input_file, specs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = input_file("shard-00000.kds", data);
    let _ = BLOCK_ROWS; // kds takes the block size from its header
    for spec in specs() {
        match KdsShard::open(&path, &spec, ROWS) {
            Err(e) => check_kind(&e, &[ErrorKind::Corrupt, ErrorKind::Version], &path),
            Ok(s) => {
                let mut total = 0;
                for b in 0..s.num_blocks() {
                    assert!(s.block_len(b) >= 1 && s.block_len(b) <= s.block_rows());
                    total += s.block_len(b) as u64;
                    match s.read_block(b) {
                        Ok(batch) => {
                            assert_eq!(batch.len(), s.block_len(b));
                            check_rows(&batch, &spec);
                        }
                        Err(e) => check_kind(&e, &[ErrorKind::Corrupt], &path),
                    }
                }
                assert_eq!(total, ROWS);
            }
        }
    }
});
