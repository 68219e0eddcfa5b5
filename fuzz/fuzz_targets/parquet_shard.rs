//! A Parquet shard of hostile bytes, opened against a fixed manifest shape; every row group decoded
//! and checked.
#![no_main]
use kdcache::ErrorKind;
use kdcache::format::parquet::ParquetShard;
use kdcache_fuzz::{BLOCK_ROWS, ROWS, check_kind, check_rows, input_file, spec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = input_file("shard-00000.parquet", data);
    let spec = spec();
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
});
