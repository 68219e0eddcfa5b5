//! `import` on logits and labels of the wrong rank or type: refused as Invalid, and no cache published.
use std::path::PathBuf;

use kdcache::data::array::{self, ArrayDtype};
use kdcache::import::{ImportOptions, import};

use crate::damage::*;

#[test]
fn import_refuses_wrong_rank_and_dtype() {
    let t = tempfile::tempdir().unwrap();
    let opts = |logits: PathBuf, labels: Option<PathBuf>, out: &str| ImportOptions {
        logits,
        labels,
        data: None,
        k: 2,
        temperatures: vec![1.0],
        dtype: LogitDtype::F16,
        out: t.path().join(out),
        writer: kdcache::format::WriterOptions::default(),
        progress: false,
    };
    // `import` with logits (and labels) from `name`.npy files holding `data` of `dtype` and `shape`
    let npy_file = |name: &str, dtype: ArrayDtype, shape: &[usize], data: &[u8]| -> PathBuf {
        let p = t.path().join(format!("{}.npy", name.replace(' ', "_")));
        array::write_npy(&p, dtype, shape, data).unwrap();
        p
    };
    let invalid = Expect::err(ErrorKind::Invalid);
    let z: Vec<f32> = (0..24).map(|x| (x % 7) as f32).collect();
    let cases: Vec<(&str, ArrayDtype, Vec<usize>, Vec<u8>)> = vec![
        ("rank 1", ArrayDtype::F32, vec![24], bytemuck::cast_slice(&z).to_vec()),
        ("rank 3", ArrayDtype::F32, vec![2, 3, 4], bytemuck::cast_slice(&z).to_vec()),
        ("rank 0", ArrayDtype::F32, vec![], bytemuck::cast_slice(&z[..1]).to_vec()),
        ("int64 logits", ArrayDtype::I64, vec![4, 3], vec![0u8; 96]),
        ("int32 logits", ArrayDtype::I32, vec![4, 6], vec![0u8; 96]),
        ("zero classes", ArrayDtype::F32, vec![4, 0], vec![]),
    ];
    for (name, dtype, shape, data) in &cases {
        let p = npy_file(name, *dtype, shape, data);
        judge(at_open(import(&opts(p, None, name))), &invalid, name);
        assert!(!t.path().join(name).join("_manifest.json").exists(), "{name}: a cache was published");
    }
    // labels of the wrong dtype or rank
    let zp = npy_file("z", ArrayDtype::F32, &[4, 6], bytemuck::cast_slice(&z));
    for (name, dtype, shape, data) in [
        ("float labels", ArrayDtype::F32, vec![4], vec![0u8; 16]),
        ("2-d labels", ArrayDtype::I64, vec![4, 1], vec![0u8; 32]),
        ("too few labels", ArrayDtype::I64, vec![3], vec![0u8; 24]),
    ] {
        let p = npy_file(name, dtype, &shape, &data);
        judge(at_open(import(&opts(zp.clone(), Some(p), name))), &invalid, name);
    }
    // a truncated logits file is corrupt
    let p = t.path().join("trunc.npy");
    let b = std::fs::read(&zp).unwrap();
    std::fs::write(&p, &b[..b.len() - 3]).unwrap();
    judge(at_open(import(&opts(p, None, "trunc"))), &Expect::err(ErrorKind::Corrupt), "truncated");
}
