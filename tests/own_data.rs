//! The README's worked example on a user's own arrays, end to end through the real binary: plain `.npy`
//! files as NumPy writes them by default (float64 features, int32 labels), teach → cache → import →
//! train with held-out data → export; the exported student is rebuilt here from its metadata alone and
//! must reproduce the run's reported top-1. Then the rerun contract of scripts: an identical `cache`
//! and `train --resume` succeed again and change nothing.
#![cfg(feature = "torch")]
mod cli_common;
use cli_common::*;
use kdcache::data::array::{self, ArrayDtype};
use rand::{Rng, SeedableRng};
use std::path::Path;

const C: usize = 40;
const D: usize = 6;

/// A Gaussian mixture: class means at distance ~3, unit noise.
fn mixture(dir: &Path, name: &str, n: usize, seed: u64, means: &[f64]) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(n * D);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.random_range(0..C);
        y.push(c as i32);
        for j in 0..D {
            let g: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0; // ~N(0, 1)
            x.push(means[c * D + j] + g);
        }
    }
    array::write_npy(&dir.join(format!("{name}.npy")), ArrayDtype::F64, &[n, D], bytemuck::cast_slice(&x)).unwrap();
    array::write_npy(&dir.join(format!("{name}_labels.npy")), ArrayDtype::I32, &[n], bytemuck::cast_slice(&y)).unwrap();
}

fn read_f64(path: &Path) -> Vec<f64> {
    let a = array::MappedArray::open_npy(path).unwrap();
    bytemuck::cast_slice::<u8, f64>(a.data()).to_vec()
}

#[test]
fn worked_example_on_plain_npy_arrays() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let means: Vec<f64> = (0..C * D).map(|_| 3.0 * (rng.random::<f64>() - 0.5) * 2.0).collect();
    mixture(dir, "feats", 4000, 1, &means);
    mixture(dir, "test", 800, 2, &means);
    let f = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (feats, labels, test, test_labels) = (f("feats.npy"), f("feats_labels.npy"), f("test.npy"), f("test_labels.npy"));

    // a teacher from the labels, then its ranked logits
    ok(&[
        "teach",
        "--data",
        &feats,
        "--labels",
        &labels,
        "--eval-data",
        &test,
        "--eval-labels",
        &test_labels,
        "--hidden",
        "64",
        "--epochs",
        "4",
        "--out",
        &f("teacher.safetensors"),
    ]);
    let cache_args = ["cache", "--teacher", &f("teacher.safetensors"), "--data", &feats, "--labels", &labels, "--out", &f("cache"), "--top-k", "8"];
    ok(&cache_args);

    // logits computed elsewhere (here: distances to the class means), imported and bound to the same inputs
    let x = read_f64(&dir.join("feats.npy"));
    let m = &means;
    let logits: Vec<f64> = x.chunks(D).flat_map(|r| (0..C).map(move |c| (0..D).map(|j| -(r[j] - m[c * D + j]).powi(2)).sum::<f64>() / 2.0)).collect();
    array::write_npy(&dir.join("logits.npy"), ArrayDtype::F64, &[4000, C], bytemuck::cast_slice(&logits)).unwrap();
    ok(&["import", "--logits", &f("logits.npy"), "--data", &feats, "--labels", &labels, "--top-k", "8", "--out", &f("imported")]);
    // both caches name the same dataset (features and labels), so train accepts the same --data for both
    let sig = |c: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(&ok(&["dump", &f(c), "--json", "--rows", "0"])).unwrap();
        v["manifest"]["signature"]["dataset"].as_str().unwrap().to_string()
    };
    assert_eq!(sig("cache"), sig("imported"));

    // a student from each, evaluated on the held-out arrays
    let train_args = |cache: &str, out: &str| -> Vec<String> {
        [
            "train",
            "--cache",
            &f(cache),
            "--data",
            &feats,
            "--eval-data",
            &test,
            "--eval-labels",
            &test_labels,
            "--student",
            "mlp:32",
            "--epochs",
            "3",
            "--batch-size",
            "128",
            "--out",
            &f(out),
            "--resume",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |a: &[String]| -> serde_json::Value { serde_json::from_str(&ok(&a.iter().map(String::as_str).collect::<Vec<_>>())).unwrap() };
    let s = run(&train_args("cache", "run"));
    let si = run(&train_args("imported", "run_imported"));
    assert_eq!(s["eval_rows"], 800);
    for r in [&s, &si] {
        assert!(r["top1"].as_f64().unwrap() > 0.3, "a student no better than chance: {r}");
        assert!(r["best_top1"].as_f64().unwrap() >= r["top1"].as_f64().unwrap());
    }

    // the exported student, rebuilt from its metadata alone, predicts what the run reported
    ok(&["export", &f("run"), "--out", &f("student.safetensors")]);
    let bytes = std::fs::read(dir.join("student.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().expect("architecture metadata");
    assert_eq!(meta["kdcache.backbone"], "mlp");
    assert_eq!(meta["kdcache.activation"], "relu");
    assert_eq!(meta["kdcache.classes"], C.to_string());
    let layers: Vec<usize> = serde_json::from_str(&meta["kdcache.layers"]).unwrap();
    assert_eq!(layers, vec![D, 32]);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let get = |n: &str| -> Vec<f32> { bytemuck::cast_slice::<u8, f32>(st.tensor(n).unwrap().data()).to_vec() };
    let linear = |x: &[f32], w: &[f32], b: &[f32], out: usize| -> Vec<f32> {
        (0..out).map(|o| b[o] + x.iter().zip(&w[o * x.len()..(o + 1) * x.len()]).map(|(a, b)| a * b).sum::<f32>()).collect()
    };
    let xt = read_f64(&dir.join("test.npy"));
    let yt: Vec<i32> = bytemuck::cast_slice::<u8, i32>(array::MappedArray::open_npy(&dir.join("test_labels.npy")).unwrap().data()).to_vec();
    let mut right = 0;
    for (row, &label) in xt.chunks(D).zip(&yt) {
        let mut h: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        for i in 0..layers.len() - 1 {
            h = linear(&h, &get(&format!("backbone.l{i}.weight")), &get(&format!("backbone.l{i}.bias")), layers[i + 1]);
            h.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        let z = linear(&h, &get("head.weight"), &get("head.bias"), C);
        let best = (0..C).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap();
        right += (best == label as usize) as usize;
    }
    let rebuilt = right as f64 / yt.len() as f64;
    let reported = s["top1"].as_f64().unwrap();
    assert!((rebuilt - reported).abs() <= 2.0 / 800.0, "rebuilt student top-1 {rebuilt} vs reported {reported}");

    // scripts rerun: an identical cache is success and untouched; a finished run resumed is unchanged
    let manifest = std::fs::read(dir.join("cache/_manifest.json")).unwrap();
    let ckpt = std::fs::read(dir.join("run/checkpoint.safetensors")).unwrap();
    for _ in 0..2 {
        let o = run_cmd(&cache_args);
        assert!(o.status.success(), "rerunning an identical cache failed: {}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stderr).contains("already holds this cache"));
        assert_eq!(std::fs::read(dir.join("cache/_manifest.json")).unwrap(), manifest);
        let again = run(&train_args("cache", "run"));
        assert_eq!(again["top1"], s["top1"]);
        assert_eq!(std::fs::read(dir.join("run/checkpoint.safetensors")).unwrap(), ckpt);
    }
}

fn run_cmd(args: &[&str]) -> std::process::Output {
    run(args)
}
