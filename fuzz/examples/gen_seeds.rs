//! Writes seed corpora for the fuzz targets: `cargo run --manifest-path fuzz/Cargo.toml --example
//! gen_seeds [DIR]` (default fuzz/corpus, one subdirectory per target, which `cargo fuzz run` uses).
use std::path::{Path, PathBuf};

use kdcache::data::array::{self, ArrayDtype};
use kdcache::format::{CacheWriter, Encoding, Signature, WriterOptions};
use kdcache_fuzz::{BLOCK_ROWS, ROWS, rows, spec};

fn cache(dir: &Path, enc: Encoding, block_rows: usize, seed: u64) -> PathBuf {
    let spec = spec();
    let (b, prior) = rows(&spec, ROWS as usize, seed);
    let opts = WriterOptions { encoding: enc, block_rows, shard_rows: ROWS as usize, overwrite: true };
    let mut w = CacheWriter::create(dir, &spec, Signature::default(), opts, None).unwrap();
    w.push(&b, Some(&prior)).unwrap();
    w.finish(ROWS, 1, "fuzz seeds").unwrap();
    dir.join(format!("shard-00000.{}", enc.ext()))
}

fn main() {
    let root = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut put = |target: &str, name: &str, bytes: &[u8]| {
        let d = root.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
        n += 1;
    };
    for (enc, target) in [(Encoding::Kds, "kds_shard"), (Encoding::Parquet, "parquet_shard")] {
        for (i, block_rows) in [BLOCK_ROWS, 8, 40].into_iter().enumerate() {
            let dir = tmp.path().join(format!("{target}-{i}"));
            let shard = cache(&dir, enc, block_rows, i as u64);
            let bytes = std::fs::read(&shard).unwrap();
            put(target, &format!("valid-block{block_rows}"), &bytes);
            if i == 0 {
                put(target, "truncated", &bytes[..bytes.len() / 2]);
                put("manifest", &format!("{}-manifest.json", enc.ext()), &std::fs::read(kdcache::format::manifest::manifest_path(&dir)).unwrap());
            }
        }
    }
    put("manifest", "newer.json", br#"{"format":"kdcache","format_version":3}"#);
    put("manifest", "not-kdcache.json", br#"{"format":"other","format_version":1}"#);
    put("manifest", "empty-object.json", b"{}");
    let f: Vec<f32> = (0..24).map(|x| x as f32 * 0.25 - 2.0).collect();
    let h: Vec<u16> = (0..10).map(|x| 0x3c00 + x).collect();
    let l: Vec<i64> = (0..7).collect();
    let i: Vec<i32> = (0..8).collect();
    let cases: Vec<(&str, ArrayDtype, Vec<usize>, Vec<u8>)> = vec![
        ("f32-2d.npy", ArrayDtype::F32, vec![4, 6], bytemuck_f32(&f)),
        ("f32-3d.npy", ArrayDtype::F32, vec![2, 3, 4], bytemuck_f32(&f)),
        ("f32-0d.npy", ArrayDtype::F32, vec![], bytemuck_f32(&f[..1])),
        ("f16-2d.npy", ArrayDtype::F16, vec![2, 5], h.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ("i64-1d.npy", ArrayDtype::I64, vec![7], l.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ("i32-3d.npy", ArrayDtype::I32, vec![2, 2, 2], i.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ("empty.npy", ArrayDtype::F32, vec![0, 5], vec![]),
    ];
    for (name, dtype, shape, data) in cases {
        let p = tmp.path().join(name);
        array::write_npy(&p, dtype, &shape, &data).unwrap();
        put("npy", name, &std::fs::read(&p).unwrap());
    }
    // a version-2 header
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    let hdr = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n";
    v2.extend_from_slice(&(hdr.len() as u32).to_le_bytes());
    v2.extend_from_slice(hdr.as_bytes());
    v2.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
    put("npy", "v2.npy", &v2);
    eprintln!("wrote {n} seeds under {}", root.display());
}

fn bytemuck_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
