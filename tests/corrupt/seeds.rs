//! Seed inputs for the fuzz targets (`fuzz/fuzz_targets/`), written with the same cache generator as
//! the static corpus beside it (`corpus.rs`): valid shards in the targets' shape (`fuzz/src/shape.rs`),
//! a cut one, manifests and `.npy` files, one subdirectory per target. `tools/fuzz.sh` runs it:
//! `KDCACHE_WRITE_SEEDS=fuzz/corpus cargo test --no-default-features --test corrupt -- --ignored --exact seeds::write_fuzz_seeds`.
use std::path::PathBuf;

use kdcache::data::array::{self, ArrayDtype};

use crate::damage::*;
use crate::fuzz_shape::{BLOCK_ROWS, ROWS, mixture_spec, spec};

#[test]
#[ignore = "writes fuzz seeds; run by tools/fuzz.sh"]
fn write_fuzz_seeds() {
    let Some(root) = std::env::var_os("KDCACHE_WRITE_SEEDS").map(PathBuf::from) else {
        eprintln!("set KDCACHE_WRITE_SEEDS=DIR to write the fuzz seeds under DIR/<target>/");
        return;
    };
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
            let spec = spec();
            let (b, prior) = random_rows(&spec, ROWS as usize, i as u64);
            write_cache(&dir, &spec, enc, block_rows, ROWS as usize, &b, Some(&prior));
            let shard = dir.join(format!("shard-00000.{}", enc.ext()));
            let bytes = std::fs::read(&shard).unwrap();
            put(target, &format!("valid-block{block_rows}"), &bytes);
            if i == 0 {
                put(target, "truncated", &bytes[..bytes.len() / 2]);
                put("manifest", &format!("{}-manifest.json", enc.ext()), &std::fs::read(kdcache::format::manifest::manifest_path(&dir)).unwrap());
            }
        }
        // an ensemble's shard (format 4: topk_logit_t)
        let dir = tmp.path().join(format!("{target}-mixture"));
        let spec = mixture_spec();
        let (b, prior) = random_rows(&spec, ROWS as usize, 7);
        write_cache(&dir, &spec, enc, BLOCK_ROWS, ROWS as usize, &b, Some(&prior));
        put(target, "mixture-valid", &std::fs::read(dir.join(format!("shard-00000.{}", enc.ext()))).unwrap());
        put("manifest", &format!("{}-mixture-manifest.json", enc.ext()), &std::fs::read(kdcache::format::manifest::manifest_path(&dir)).unwrap());
    }
    put("manifest", "newer.json", br#"{"format":"kdcache","format_version":5}"#);
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
