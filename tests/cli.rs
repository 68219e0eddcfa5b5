//! The whole pipeline through the real binary: synth → teach → cache → verify → train, resume after a
//! crash, parts and merge, export, and the errors a user can cause.
#![cfg(feature = "torch")]
mod cli_common;
use cli_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn synth(dir: &Path, classes: usize, dim: usize, train: usize) {
    ok(&[
        "synth",
        "--out",
        p(dir),
        "--classes",
        &classes.to_string(),
        "--dim",
        &dim.to_string(),
        "--train",
        &train.to_string(),
        "--test",
        "200",
        "--group",
        "5",
    ]);
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn pipeline_train_and_bit_for_bit_resume() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 30, 8, 1200);
    let teacher = t.path().join("teacher.safetensors");
    ok(&["teach", "--data", p(&d), "--hidden", "32", "--epochs", "2", "--out", p(&teacher)]);
    let taught = t.path().join("taught");
    let rep: serde_json::Value =
        serde_json::from_str(&ok(&["cache", "--teacher", p(&teacher), "--data", p(&d), "--out", p(&taught), "--top-k", "8", "--batch-size", "100"])).unwrap();
    assert_eq!(rep["rows"], 1200);
    assert!(ok(&["verify", p(&taught)]).starts_with("ok:"));
    // the same teacher stored in float16 computes in float32 and ranks the same classes first
    let bytes = std::fs::read(&teacher).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let halves: Vec<(String, Vec<u8>, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let f: &[f32] = bytemuck::cast_slice(v.data());
            let h: Vec<half::f16> = f.iter().map(|&x| half::f16::from_f32(x)).collect();
            (n, bytemuck::cast_slice(&h).to_vec(), v.shape().to_vec())
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        halves.iter().map(|(n, b, s)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b).unwrap())).collect();
    let teacher16 = t.path().join("teacher16.safetensors");
    safetensors::serialize_to_file(views, None, &teacher16).unwrap();
    let taught16 = t.path().join("taught16");
    ok(&["cache", "--teacher", p(&teacher16), "--data", p(&d), "--out", p(&taught16), "--top-k", "8", "--batch-size", "100"]);
    let top1 = |c: &std::path::Path| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&ok(&["dump", p(c), "--rows", "0..200", "--json"])).unwrap();
        v["rows"].as_array().unwrap().iter().map(|r| r["ranks"][0]["class"].clone()).collect()
    };
    let (a, b) = (top1(&taught), top1(&taught16));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(same >= 190, "the float16 teacher agrees on the top class in only {same} of 200 rows");
    // students learn from the generator's Bayes-optimal teacher (a 2-epoch teacher is too weak to judge them)
    let oracle = d.join("oracle.safetensors");
    let cache = t.path().join("cache");
    ok(&["cache", "--teacher", p(&oracle), "--data", p(&d), "--out", p(&cache), "--top-k", "8", "--format", "parquet"]);
    let test_cache = t.path().join("test_cache");
    ok(&["cache", "--teacher", p(&oracle), "--data", p(&d), "--split", "test", "--out", p(&test_cache), "--top-k", "8"]);
    // a student with every estimator except rs (no tail samples here)
    for loss in ["dis", "full", "topk", "ghost"] {
        let run = t.path().join(format!("run_{loss}"));
        let s: serde_json::Value = serde_json::from_str(&ok(&[
            "train",
            "--cache",
            p(&cache),
            "--data",
            p(&d),
            "--eval-cache",
            p(&test_cache),
            "--loss",
            loss,
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--candidates",
            "10",
            "--out",
            p(&run),
        ]))
        .unwrap();
        for key in
            ["loss", "top1", "top5", "ece", "teacher_agreement", "steps", "step_ms_median", "rows_per_s", "classes", "head_rows", "best_top1", "best_epoch"]
        {
            assert!(!s[key].is_null(), "{loss}: summary lacks {key}: {s}");
        }
        assert_eq!(s["steps"], 38);
        assert!(s["top1"].as_f64().unwrap() > 3.0 / 30.0, "{loss}: student no better than chance: {s}");
        for f in ["config.json", "metrics.jsonl", "checkpoint.safetensors", "curves.svg", "summary.json"] {
            assert!(run.join(f).exists(), "{loss}: {f} missing");
        }
    }
    // resume: 2 epochs straight == 1 epoch, then --resume to 2 epochs (bit for bit)
    let args = |out: &Path, epochs: &str| -> Vec<String> {
        ["train", "--cache", p(&cache), "--data", p(&d), "--loss", "dis", "--candidates", "10", "--batch-size", "64", "--epochs", epochs, "--out", p(out)]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let sa: Vec<String> = args(&a, "2");
    ok(&sa.iter().map(String::as_str).collect::<Vec<_>>());
    let sb: Vec<String> = args(&b, "1");
    ok(&sb.iter().map(String::as_str).collect::<Vec<_>>());
    let mut sb2: Vec<String> = args(&b, "2");
    sb2.push("--resume".into());
    ok(&sb2.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(std::fs::read(a.join("checkpoint.safetensors")).unwrap(), std::fs::read(b.join("checkpoint.safetensors")).unwrap(), "resumed run differs");
    // a second run into the same directory without --resume is refused
    bad(&sb.iter().map(String::as_str).collect::<Vec<_>>(), "--resume");
    // export for Python
    let exp = t.path().join("student.safetensors");
    ok(&["export", p(&a), "--out", p(&exp)]);
    let bytes = std::fs::read(&exp).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("head.weight").unwrap().shape(), &[30, 256]);
    assert_eq!(st.tensor("head.bias").unwrap().shape(), &[30]);
    assert!(st.tensor("backbone.l0.weight").is_ok());
    // corrupt checkpoint
    std::fs::write(b.join("checkpoint.safetensors"), b"not a checkpoint").unwrap();
    bad(&sb2.iter().map(String::as_str).collect::<Vec<_>>(), "checkpoint");
}

#[test]
fn crash_resume_and_parts_give_the_same_rows() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 40, 40, 3000); // features of dim 40 are the logits of the identity teacher
    let common_args =
        ["--teacher", "identity", "--data", p(&d), "--top-k", "6", "--tail-samples", "3", "--batch-size", "100", "--shard-rows", "500", "--block-rows", "250"];
    let full = t.path().join("full");
    let mut a = vec!["cache", "--out", p(&full)];
    a.extend(common_args);
    ok(&a);
    assert!(ok(&["verify", p(&full)]).starts_with("ok:"));
    // tail samples are drawn at the first temperature and carry their logits: rs trains at another too
    ok(&["train", "--cache", p(&full), "--data", p(&d), "--loss", "rs", "--temperature", "2", "--max-steps", "2", "--out", p(&t.path().join("rs-t2"))]);
    // crash after two shards (abort, no cleanup), then the same command resumes
    let crashed = t.path().join("crashed");
    let mut a = vec!["cache", "--out", p(&crashed)];
    a.extend(common_args);
    let o = kd().args(&a).env("KDCACHE_CRASH_AFTER_SHARDS", "2").output().unwrap();
    assert!(!o.status.success(), "the crash hook did not fire");
    assert!(!crashed.join("_manifest.json").exists(), "a crashed build published a manifest");
    assert!(crashed.join("_manifest.partial.json").exists());
    // a resume with another tail-sample seed would mix two samplings: refused, nothing lost
    let mut other_seed = a.clone();
    other_seed.extend(["--seed", "7"]);
    bad(&other_seed, "partial build of another cache");
    assert!(crashed.join("_manifest.partial.json").exists());
    let rep: serde_json::Value = serde_json::from_str(&ok(&a)).unwrap();
    assert_eq!(rep["resumed_from"], 1000, "{rep}");
    assert_eq!(rows_json(&crashed), rows_json(&full));
    // two parts, merged
    let mut parts = vec![];
    for i in 0..2 {
        let out = t.path().join(format!("part{i}"));
        let part = format!("{i}/2");
        let mut a = vec!["cache", "--out", p(&out), "--part", &part];
        a.extend(common_args);
        ok(&a);
        parts.push(out);
    }
    let merged = t.path().join("merged");
    ok(&["merge", "--out", p(&merged), p(&parts[1]), p(&parts[0])]);
    assert!(ok(&["verify", p(&merged)]).starts_with("ok:"));
    assert_eq!(rows_json(&merged), rows_json(&full));
    bad(&["merge", "--out", p(&t.path().join("m2")), p(&parts[0])], "parts");
    // rs trains from the tail samples
    ok(&["train", "--cache", p(&full), "--data", p(&d), "--loss", "rs", "--temperature", "1", "--epochs", "1", "--out", p(&t.path().join("rs"))]);
}

#[test]
fn torchscript_teacher_and_backbone() {
    let fx = fixtures();
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("c");
    ok(&["cache", "--teacher", p(&fx.join("teacher.pt")), "--data", p(&fx.join("teacher_x.npy")), "--out", p(&cache), "--top-k", "5", "--temperatures", "1"]);
    // the cached top-5 are the logits PyTorch computed
    let z = kdcache::data::array::MappedArray::open_npy(&fx.join("teacher_z.npy")).unwrap();
    let mut zv = vec![];
    z.f32_rows(0..16, &mut zv);
    let rows = rows_json(&cache);
    for i in 0..16 {
        let zi = &zv[i * 30..(i + 1) * 30];
        let best = (0..30).max_by(|&a, &b| zi[a].partial_cmp(&zi[b]).unwrap()).unwrap();
        assert_eq!(rows[i]["ranks"][0]["class"], best as u64, "row {i}");
        let got = rows[i]["ranks"][0]["logit"].as_f64().unwrap() as f32;
        assert!((got - zi[best]).abs() <= 1e-2 * (1.0 + zi[best].abs()), "row {i}: {got} vs {}", zi[best]);
    }
    // a TorchScript student backbone trains through TrainableCModule
    let d = t.path().join("data");
    synth(&d, 30, 8, 600);
    let c2 = t.path().join("c2");
    ok(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&c2), "--top-k", "5"]);
    let train_ts = |backbone: &Path, out: &Path, epochs: &str, resume: bool| -> serde_json::Value {
        let mut a = vec!["train", "--cache", p(&c2), "--data", p(&d), "--student-ts", p(backbone), "--epochs", epochs];
        a.extend(["--batch-size", "64", "--candidates", "10", "--out", p(out)]);
        if resume {
            a.push("--resume");
        }
        serde_json::from_str(&ok(&a)).unwrap()
    };
    let s = train_ts(&fx.join("backbone.pt"), &t.path().join("r"), "1", false);
    assert_eq!(s["loss"], "dis");
    // a BatchNorm + dropout backbone: its running statistics and dropout masks survive a resume, bit for bit
    let bn_pt = fx.join("backbone_bn.pt");
    let bn = |out: &Path, epochs: &str, resume: bool| train_ts(&bn_pt, out, epochs, resume);
    let (a, b) = (t.path().join("bn_a"), t.path().join("bn_b"));
    let sa = bn(&a, "2", false);
    // the export (into a folder that does not exist yet) reloads to the reported accuracy: the trained
    // module beside it carries the BatchNorm statistics, the file the parameters under their own names
    let exp = t.path().join("exported/bn.safetensors");
    ok(&["export", p(&a), "--out", p(&exp)]);
    let bytes = std::fs::read(&exp).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensor("backbone.1.weight").is_ok() && st.tensor("backbone.0.bias").is_ok(), "TorchScript names lost: {:?}", st.names());
    let meta = safetensors::SafeTensors::read_metadata(&bytes).unwrap().1.metadata().clone().unwrap();
    assert_eq!(meta["kdcache.backbone_module"], "bn.backbone.pt");
    let mut module = tch::CModule::load(t.path().join("exported/bn.backbone.pt")).unwrap();
    module.set_eval();
    let read = |name: &str| kdcache::data::array::MappedArray::open_npy(&d.join(name)).unwrap();
    let (xs, ys) = (read("test_x.npy"), read("test_y.npy"));
    let mut x = vec![];
    xs.f32_rows(0..xs.shape[0], &mut x);
    let x = tch::Tensor::from_slice(&x).reshape([xs.shape[0] as i64, 8]);
    let tensor = |n: &str| {
        let v = st.tensor(n).unwrap();
        tch::Tensor::from_slice(&bytemuck::pod_collect_to_vec::<u8, f32>(v.data())).reshape(v.shape().iter().map(|&s| s as i64).collect::<Vec<_>>())
    };
    // the logits as train evaluates them: [h, 1]·[W | b]ᵀ
    let table = tch::Tensor::cat(&[tensor("head.weight"), tensor("head.bias").unsqueeze(1)], 1);
    let h = tch::no_grad(|| module.forward_ts(&[&x]).unwrap());
    let h = tch::Tensor::cat(&[&h, &h.ones_like().narrow(1, 0, 1)], 1);
    let pred = Vec::<i64>::try_from(&h.matmul(&table.tr()).argmax(1, false)).unwrap();
    let y = ys.i64_values();
    let top1 = pred.iter().zip(&y).filter(|(p, y)| p == y).count() as f64 / y.len() as f64;
    assert_eq!(top1, sa["top1"].as_f64().unwrap(), "the exported BatchNorm student reloads to another accuracy");
    bn(&b, "1", false);
    let after_one = std::fs::read(b.join("checkpoint.safetensors")).unwrap();
    let sb = bn(&b, "2", true);
    let (ca, cb) = (std::fs::read(a.join("checkpoint.safetensors")).unwrap(), std::fs::read(b.join("checkpoint.safetensors")).unwrap());
    assert_ne!(after_one, cb, "the resumed run trained nothing");
    let read = |bytes: &[u8]| -> Vec<(String, Vec<u8>)> {
        let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let mut v: Vec<(String, Vec<u8>)> = st.tensors().into_iter().filter(|(n, _)| n != "backbone_ts").map(|(n, t)| (n, t.data().to_vec())).collect();
        v.sort();
        v
    };
    assert!(read(&ca) == read(&cb), "a resumed BatchNorm backbone differs from an uninterrupted one");
    // evaluation runs on the running statistics, which only the checkpointed module carries
    for key in ["top1", "nll", "ece"] {
        assert_eq!(sa[key], sb[key], "{key}: the resumed run evaluates differently (running statistics lost?)");
    }
    let ts = |bytes: &[u8]| safetensors::SafeTensors::deserialize(bytes).unwrap().tensor("backbone_ts").map(|t| t.data().to_vec()).ok();
    assert!(ts(&ca).is_some(), "no TorchScript module in the checkpoint");
    assert_eq!(ts(&ca), ts(&cb), "the checkpointed modules differ");
}

#[test]
fn user_errors_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 20, 20, 300);
    let o = d.join("oracle.safetensors");
    let cache = t.path().join("c");
    if !tch::Cuda::is_available() {
        bad(&["cache", "--teacher", p(&o), "--data", p(&d), "--out", p(&t.path().join("x")), "--device", "cuda"], "cuda");
    }
    bad(&["cache", "--teacher", p(&t.path().join("none.pt")), "--data", p(&d), "--out", p(&t.path().join("x"))], "none.pt");
    // a file that is no model: libtorch's message, on one line, without its C++ backtrace
    bad(&["cache", "--teacher", p(&fixtures().join("teacher_x.npy")), "--data", p(&d), "--out", p(&t.path().join("x"))], "not a loadable TorchScript");
    bad(&["train", "--cache", p(&t.path().join("none")), "--data", p(&d), "--out", p(&t.path().join("x"))], "none");
    bad(&["export", p(&t.path().join("none")), "--out", p(&t.path().join("s.safetensors"))], "no training run");
    // a teacher that rejects the data's shape
    bad(&["cache", "--teacher", p(&fixtures().join("teacher.pt")), "--data", p(&d), "--out", p(&t.path().join("x"))], "rejected data row 0");
    assert!(!t.path().join("x/_manifest.json").exists());
    ok(&["cache", "--teacher", p(&o), "--data", p(&d), "--out", p(&cache), "--top-k", "4"]);
    // a different teacher into the same directory
    bad(&["cache", "--teacher", "identity", "--data", p(&d), "--out", p(&cache), "--top-k", "4"], "--overwrite");
    let run = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> =
            ["train", "--cache", p(&cache), "--data", p(&d), "--out", p(&t.path().join("r")), "--epochs", "1"].iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let call = |v: Vec<String>, needle: &str| bad(&v.iter().map(String::as_str).collect::<Vec<_>>(), needle);
    call(run(&["--temperature", "3"]), "not in the cache");
    call(run(&["--temperature", "0"]), "must be > 0");
    call(run(&["--candidates", "21"]), "between 1 and the class count");
    call(run(&["--candidates", "0"]), "between 1 and the class count");
    call(run(&["--dis-clip", "0.5"]), "--dis-clip");
    call(run(&["--rank-budget", "3"]), "--rank-budget");
    call(run(&["--loss", "rs"]), "tail samples");
    // a damaged Parquet page: train's reader checks each row group's hash before decoding it
    let pq = t.path().join("pq");
    ok(&["cache", "--teacher", p(&o), "--data", p(&d), "--out", p(&pq), "--top-k", "4", "--format", "parquet", "--block-rows", "100"]);
    let shard = pq.join("shard-00000.parquet");
    let mut b = std::fs::read(&shard).unwrap();
    b[300] ^= 0x40;
    std::fs::write(&shard, &b).unwrap();
    bad(&["train", "--cache", p(&pq), "--data", p(&d), "--out", p(&t.path().join("rp")), "--epochs", "1"], "checksum mismatch");
    // data the cache was not built from
    let other = t.path().join("other");
    ok(&["synth", "--out", p(&other), "--classes", "20", "--dim", "20", "--train", "300", "--seed", "9"]);
    let mut v = run(&[]);
    v[4] = p(&other).to_string();
    call(v, "dataset fingerprint");
    // NaN teacher logits: reported by row, or skipped
    let mut x = vec![0.25f32; 50 * 6];
    x[17 * 6 + 2] = f32::INFINITY;
    kdcache::data::array::write_npy(&t.path().join("x.npy"), kdcache::data::array::ArrayDtype::F32, &[50, 6], bytemuck::cast_slice(&x)).unwrap();
    // the CPU ranking path, and the tensor path (tail samples are drawn by torch): the same rules
    for (out, extra) in [("n", &[][..]), ("n2", &["--tail-samples", "2"][..])] {
        let x = p(&t.path().join("x.npy")).to_string();
        let dir = p(&t.path().join(out)).to_string();
        let mut args = vec!["cache", "--teacher", "identity", "--data", &x, "--out", &dir, "--top-k", "2"];
        args.extend_from_slice(extra);
        bad(&args, "row 17, class 2");
        args.extend(["--nan", "skip", "--batch-size", "16"]);
        let rep: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        assert_eq!(rep["rows"], 49, "{out}");
        assert_eq!(rep["skipped_nonfinite"], 1, "{out}");
    }
    let rows = rows_json(&t.path().join("n2"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 49);
    assert!(rows.iter().all(|r| r["row"] != 17), "the non-finite row was kept");
}

#[test]
fn resume_is_safe_to_pass_always_and_survives_kill_9() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 30, 8, 3000);
    let cache = t.path().join("c");
    ok(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&cache), "--top-k", "5"]);
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--cache",
            p(&cache),
            "--data",
            p(&d),
            "--candidates",
            "10",
            "--batch-size",
            "32",
            "--epochs",
            "3",
            "--checkpoint-every",
            "7",
            "--resume",
            "--out",
            p(out),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // --resume on a run that does not exist yet starts it
    let a = t.path().join("a");
    let o = Command::new(env!("CARGO_BIN_EXE_kdcache")).args(args(&a)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to resume"));
    // the same run, killed with SIGKILL at growing delays (before the first checkpoint, between
    // checkpoints, while one is written) and resumed each time, ends with the same bytes
    let b = t.path().join("b");
    let mut kills = 0;
    for delay_ms in (0..).map(|i| 40 + 90 * i) {
        let mut child = kd().args(args(&b)).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_some() {
            break; // finished before the kill
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        assert!(kills < 200, "the run never finished");
    }
    ok(&args(&b).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(kills >= 3, "only {kills} kills: the test did not interrupt the run");
    assert_eq!(
        std::fs::read(a.join("checkpoint.safetensors")).unwrap(),
        std::fs::read(b.join("checkpoint.safetensors")).unwrap(),
        "a killed and resumed run differs"
    );
    let sa: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("summary.json")).unwrap()).unwrap();
    let sb: serde_json::Value = serde_json::from_slice(&std::fs::read(b.join("summary.json")).unwrap()).unwrap();
    assert_eq!(sa["top1"], sb["top1"]);
}

#[test]
fn teach_classes_and_held_out_labels_outside_the_cache() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 40, 8, 400);
    // 50 classes for labels below 40: the teacher, and the cache after it, have all 50
    let teacher = t.path().join("teacher.safetensors");
    let rep: serde_json::Value =
        serde_json::from_str(&ok(&["teach", "--data", p(&d), "--hidden", "16", "--epochs", "1", "--classes", "50", "--out", p(&teacher)])).unwrap();
    assert_eq!(rep["classes"], 50);
    let cache = t.path().join("cache");
    ok(&["cache", "--teacher", p(&teacher), "--data", p(&d), "--out", p(&cache), "--top-k", "5"]);
    let man: serde_json::Value = serde_json::from_slice(&std::fs::read(cache.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(man["classes"], 50);
    // a label at or above --classes is refused, naming its row
    let labels = |name: &str, y: &[i64]| {
        let path = t.path().join(name);
        kdcache::data::array::write_npy(&path, kdcache::data::array::ArrayDtype::I64, &[y.len()], bytemuck::cast_slice(y)).unwrap();
        path
    };
    let mut y: Vec<i64> = (0..400).map(|i| i % 40).collect();
    y[3] = 55;
    let bad_y = labels("bad_y.npy", &y);
    let x = d.join("train_x.npy");
    let err = bad(&["teach", "--data", p(&x), "--labels", p(&bad_y), "--classes", "50", "--out", p(&t.path().join("t2.safetensors"))], "label 55 of row 3");
    assert!(err.contains("--classes 50"), "{err}");
    // held-out labels outside the cache's classes: refused before the first step, naming the first row
    let mut ey: Vec<i64> = (0..200).map(|i| i % 40).collect();
    ey[7] = 50;
    ey[9] = 61;
    let eval_y = labels("eval_y.npy", &ey);
    let run = t.path().join("run");
    let err = bad(
        &["train", "--cache", p(&cache), "--data", p(&d), "--eval-data", p(&d.join("test_x.npy")), "--eval-labels", p(&eval_y), "--out", p(&run)],
        "label 50 of held-out row 7",
    );
    assert!(err.contains("2 held-out rows"), "{err}");
    assert!(!run.join("checkpoint.safetensors").exists() && !run.join("metrics.jsonl").exists(), "the run trained before refusing");
}

#[test]
fn a_directory_in_use_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 30, 8, 3000);
    let cache = t.path().join("c");
    ok(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&cache), "--top-k", "5"]);
    assert!(!cache.join(".kdcache.lock").exists(), "the lock file outlives the build");
    let run = t.path().join("run");
    let args = ["train", "--cache", p(&cache), "--data", p(&d), "--batch-size", "16", "--epochs", "50", "--resume", "--out", p(&run)];
    // a second train on a run directory in use is refused, naming the holder; the first carries on
    let mut first = kd().args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !run.join(".kdcache.lock").exists() {
        assert!(t0.elapsed().as_secs() < 60 && first.try_wait().unwrap().is_none(), "the first run never took its lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let err = bad(&args, "in use by");
    assert!(err.contains(&format!("pid {} (kdcache train)", first.id())), "{err}");
    assert!(first.try_wait().unwrap().is_none(), "the first run stopped");
    // killed with SIGKILL, the holder leaves its lock file, which binds nobody
    first.kill().unwrap();
    first.wait().unwrap();
    let mut short = args.to_vec();
    short[8] = "1";
    short.push("--overwrite");
    short.retain(|a| *a != "--resume");
    ok(&short);
    assert!(!run.join(".kdcache.lock").exists());
    // the writers of a cache directory take the same lock
    let held = t.path().join("held");
    std::fs::create_dir_all(&held).unwrap();
    let lock = kdcache::fsio::DirLock::acquire(&held, "test").unwrap();
    let holder = format!("pid {} (kdcache test)", std::process::id());
    let e = bad(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&held), "--top-k", "5"], &holder);
    assert!(e.contains("in use"), "{e}");
    bad(&["merge", "--out", p(&held), p(&cache)], &holder);
    drop(lock);
    ok(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&held), "--top-k", "5"]);
}

/// Runs kdcache with progress and notes on (no --quiet); asserts success and returns stderr.
fn ok_noted(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_kdcache")).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "kdcache {args:?} failed: {err}");
    err
}

#[test]
fn small_problems_integer_images_and_tuple_teachers() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 10, 16, 300);
    // the default --top-k 64 with 10 classes: every class is cached, with a note
    let cache = t.path().join("c");
    let err = ok_noted(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&cache)]);
    assert!(err.contains("note: --top-k 64 exceeds the class count C = 10"), "{err}");
    let man: serde_json::Value = serde_json::from_slice(&std::fs::read(cache.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(man["top_k"], 10);
    // dis on 10 classes runs full, and says so once
    let err = ok_noted(&["train", "--cache", p(&cache), "--data", p(&d), "--epochs", "1", "--batch-size", "64", "--out", p(&t.path().join("r"))]);
    assert_eq!(err.matches("so it runs full").count(), 1, "{err}");
    // images stored as uint8 [N, 1, 4, 4]: read as float32 values (said once), and their float32 and
    // float64 copies are the same dataset
    let n = 300;
    let px: Vec<u8> = (0..n * 16).map(|i| ((i * 37 + i / 16 * 11) % 256) as u8).collect();
    let y: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
    let write = |name: &str, dt, bytes: &[u8]| {
        let path = t.path().join(name);
        let shape = if name.starts_with('y') { vec![n] } else { vec![n, 1, 4, 4] };
        kdcache::data::array::write_npy(&path, dt, &shape, bytes).unwrap();
        path
    };
    use kdcache::data::array::ArrayDtype;
    let x8 = write("x8.npy", ArrayDtype::U8, &px);
    let x32 = write("x32.npy", ArrayDtype::F32, bytemuck::cast_slice(&px.iter().map(|&v| v as f32).collect::<Vec<_>>()));
    let x64 = write("x64.npy", ArrayDtype::F64, bytemuck::cast_slice(&px.iter().map(|&v| v as f64).collect::<Vec<_>>()));
    let yp = write("y.npy", ArrayDtype::I64, bytemuck::cast_slice(&y));
    let teacher = t.path().join("t.safetensors");
    let err = ok_noted(&["teach", "--data", p(&x8), "--labels", p(&yp), "--hidden", "16", "--epochs", "1", "--out", p(&teacher)]);
    assert_eq!(err.matches("uint8 features are used as float32").count(), 1, "{err}");
    let c8 = t.path().join("c8");
    ok(&["cache", "--teacher", p(&teacher), "--data", p(&x8), "--labels", p(&yp), "--out", p(&c8), "--top-k", "3"]);
    for x in [&x8, &x32, &x64] {
        let out = t.path().join(format!("r-{}", x.file_stem().unwrap().to_str().unwrap()));
        ok(&["train", "--cache", p(&c8), "--data", p(x), "--labels", p(&yp), "--epochs", "1", "--batch-size", "64", "--out", p(&out)]);
    }
    // a TorchScript teacher returning (logits, inputs): the first tensor is the logits, with a note
    let fx = fixtures();
    let (single, pair) = (t.path().join("single"), t.path().join("pair"));
    let args = |teacher: &str, out: &Path| -> Vec<String> {
        ["cache", "--teacher", p(&fx.join(teacher)), "--data", p(&fx.join("teacher_x.npy")), "--out", p(out), "--top-k", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    ok(&args("teacher.pt", &single).iter().map(String::as_str).collect::<Vec<_>>());
    let err = ok_noted(&args("teacher_tuple.pt", &pair).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(err.matches("its first, a tensor, is taken as the logits").count(), 1, "{err}");
    assert_eq!(rows_json(&single), rows_json(&pair));
}

/// `kdcache step`: the fixture of one batch's losses and gradients has every tensor, a `dis` step
/// touches only its plan's rows, and `dis` computing every class through its sampled path (the dense
/// switch off) gives what `full` (spread tail) and `ghost` (bucket tail) give.
#[test]
fn step_writes_a_fixture_per_estimator() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 30, 8, 200);
    let cache = t.path().join("cache");
    ok(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&cache), "--top-k", "4", "--tail-samples", "4"]);
    struct Fixture {
        bytes: Vec<u8>,
    }
    impl Fixture {
        fn st(&self) -> safetensors::SafeTensors<'_> {
            safetensors::SafeTensors::deserialize(&self.bytes).unwrap()
        }
        fn shape(&self, n: &str) -> Vec<usize> {
            self.st().tensor(n).unwrap_or_else(|_| panic!("no tensor {n}")).shape().to_vec()
        }
        fn f32s(&self, n: &str) -> Vec<f32> {
            let st = self.st();
            let v = st.tensor(n).unwrap();
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{n}");
            bytemuck::pod_collect_to_vec(v.data())
        }
        fn f64s(&self, n: &str) -> Vec<f64> {
            let st = self.st();
            let v = st.tensor(n).unwrap();
            assert_eq!(v.dtype(), safetensors::Dtype::F64, "{n}");
            bytemuck::pod_collect_to_vec(v.data())
        }
        fn i64s(&self, n: &str) -> Vec<i64> {
            let st = self.st();
            let v = st.tensor(n).unwrap();
            assert_eq!(v.dtype(), safetensors::Dtype::I64, "{n}");
            bytemuck::pod_collect_to_vec(v.data())
        }
        fn config(&self) -> serde_json::Value {
            let (_, m) = safetensors::SafeTensors::read_metadata(&self.bytes).unwrap();
            serde_json::from_str(&m.metadata().as_ref().unwrap()["config"]).unwrap()
        }
    }
    let step = |name: &str, args: &[&str]| -> Fixture {
        let out = t.path().join(format!("{name}.safetensors"));
        let mut a = vec!["step", "--cache", p(&cache), "--rows", "6", "--dim", "5", "--steps", "3", "--seed", "7", "--out", p(&out)];
        a.extend(args);
        ok(&a);
        Fixture { bytes: std::fs::read(&out).unwrap() }
    };
    let (c, n, dim) = (30usize, 6usize, 5usize);
    for loss in ["full", "topk", "ghost", "rs", "dis"] {
        let f = step(loss, &["--loss", loss]);
        let cfg = f.config();
        assert_eq!((cfg["loss"].as_str(), cfg["classes"].as_u64(), cfg["k"].as_u64(), cfg["temperature"].as_f64()), (Some(loss), Some(30), Some(4), Some(1.0)));
        assert_eq!(f.shape("h"), [n, dim]);
        assert_eq!(f.shape("head0"), [c, dim + 1]);
        assert_eq!(f.i64s("rows"), (0..n as i64).collect::<Vec<_>>());
        for s in 0..3 {
            let loss_v = f.f64s(&format!("s{s}.loss"));
            assert!(loss_v.len() == 1 && loss_v[0].is_finite(), "{loss}: loss {loss_v:?}");
            assert_eq!(f.f64s(&format!("s{s}.constant")).len(), 1);
            assert_eq!(f.f32s(&format!("s{s}.grad_h")).len(), n * dim);
            let g = f.f32s(&format!("s{s}.grad_head"));
            assert!(g.len() == c * (dim + 1) && g.iter().any(|&x| x != 0.0), "{loss}: head gradient");
            assert_eq!(f.shape(&format!("s{s}.head")), [c, dim + 1]);
        }
    }
    // a sparse dis step: the gradient and the update only on the plan's rows
    let f = step("dis_sparse", &["--loss", "dis", "--candidates", "12", "--dis-dense-above", "2"]);
    for s in 0..3 {
        assert_eq!(f.i64s(&format!("s{s}.dense")), [0]);
        let union = f.i64s(&format!("s{s}.union"));
        let (cols, logw) = (f.i64s(&format!("s{s}.cols")), f.f64s(&format!("s{s}.logw")));
        assert!(!cols.is_empty() && cols.len() == logw.len() && cols.iter().all(|j| union.contains(j)));
        let (g, before, after) =
            (f.f32s(&format!("s{s}.grad_head")), f.f32s(&if s == 0 { "head0".into() } else { format!("s{}.head", s - 1) }), f.f32s(&format!("s{s}.head")));
        for j in 0..c {
            let row = j * (dim + 1)..(j + 1) * (dim + 1);
            if !union.contains(&(j as i64)) {
                assert!(g[row.clone()].iter().all(|&x| x == 0.0), "step {s}: gradient on row {j} outside the plan");
                assert_eq!(before[row.clone()], after[row], "step {s}: row {j} outside the plan moved");
            }
        }
        assert_eq!(f.i64s(&format!("s{s}.assign")).len(), c);
        assert_eq!(f.f64s(&format!("s{s}.mass")).len(), f.config()["dis_clusters"].as_u64().unwrap() as usize);
    }
    // every class a column through the sampled path: exactly full (spread) and ghost (bucket)
    for (tail, dense) in [("spread", "full"), ("bucket", "ghost")] {
        let lr = ["--head-lr", "1e-3"];
        let a =
            step(&format!("dis_all_{tail}"), &[&["--loss", "dis", "--candidates", "30", "--dis-dense-above", "2", "--dis-tail", tail][..], &lr[..]].concat());
        let b = step(&format!("{dense}_lr"), &[&["--loss", dense][..], &lr[..]].concat());
        for s in 0..3 {
            assert_eq!(a.i64s(&format!("s{s}.dense")), [0]);
            assert!(a.f64s(&format!("s{s}.logw")).iter().all(|&w| w == 0.0), "every class is drawn for sure");
            let close = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
            for k in ["grad_h", "grad_head", "head"] {
                let k = format!("s{s}.{k}");
                assert!(close(&a.f32s(&k), &b.f32s(&k)) < 1e-5, "dis ({tail}) vs {dense}: {k}");
            }
            for k in ["loss", "constant"] {
                let k = format!("s{s}.{k}");
                assert!((a.f64s(&k)[0] - b.f64s(&k)[0]).abs() < 1e-5, "dis ({tail}) vs {dense}: {k}");
            }
        }
    }
    // bad input: one line, exit 2
    let bad_out = t.path().join("bad.safetensors");
    let base = ["step", "--cache", p(&cache), "--out", p(&bad_out)];
    let bad_step = |extra: &[&str], needle: &str| bad(&[&base[..], extra].concat(), needle);
    bad_step(&["--rows", "4", "--dim", "4", "--temperature", "3"], "not in the cache");
    bad_step(&["--rows", "201", "--dim", "4"], "the cache has 200 rows");
    bad_step(&["--rows", "4", "--dim", "0"], "at least 1");
    bad_step(&["--rows", "4", "--dim", "4", "--candidates", "31"], "--candidates");
    let plain = t.path().join("plain");
    ok(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&plain), "--top-k", "4"]);
    bad(&["step", "--cache", p(&plain), "--rows", "4", "--dim", "4", "--loss", "rs", "--out", p(&bad_out)], "tail samples");
}

/// The long-tailed pipeline: a power-law world with two scales of hierarchy, `dis` with each proposal,
/// evaluations within epochs with seconds of training, top-1 by frequency band and retrieval in the
/// summary, and `compare`'s time to accuracy over the runs. Bad proposal settings: one line, exit 2.
#[test]
fn long_tailed_world_proposals_bands_and_time_to_accuracy() {
    let t = tempfile::tempdir().unwrap();
    let (data, cache) = (t.path().join("data"), t.path().join("cache"));
    ok(&["synth", "--out", p(&data), "--classes", "400", "--dim", "8", "--train", "3000", "--test", "600", "--zipf", "1.1", "--coarse", "40"]);
    for s in ["train", "test"] {
        ok(&[
            "cache",
            "--teacher",
            p(&data.join("oracle.safetensors")),
            "--data",
            p(&data),
            "--split",
            s,
            "--out",
            p(&cache.join(s)),
            "--top-k",
            "4",
            "--temperatures",
            "1,2",
        ]);
    }
    let mut runs = vec![];
    for prop in ["uniform", "prior", "clusters", "neyman"] {
        let out = t.path().join(prop);
        let (train, test) = (cache.join("train"), cache.join("test"));
        let mut args = vec!["train", "--cache", p(&train), "--eval-cache", p(&test), "--data", p(&data), "--loss", "dis", "--dis-proposal", prop];
        args.extend(["--candidates", "60", "--epochs", "2", "--batch-size", "64", "--eval-every", "20", "--retrieval", "--out", p(&out)]);
        ok(&args);
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
        let b = &s["bands"];
        let rows = b["many_rows"].as_u64().unwrap() + b["medium_rows"].as_u64().unwrap() + b["few_rows"].as_u64().unwrap();
        assert_eq!(rows, s["eval_rows"].as_u64().unwrap(), "{prop}: the bands hold every held-out row: {b}");
        assert!(b["many_rows"].as_u64().unwrap() > 0 && b["few_rows"].as_u64().unwrap() > 0, "{prop}: a long tail has many- and few-shot rows: {b}");
        let r = &s["retrieval"];
        assert!(r["queries"].as_u64().unwrap() > 10 && (0.0..=1.0).contains(&r["map"].as_f64().unwrap()), "{prop}: {r}");
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["dis"]["proposal"], prop);
        // evaluations within the epochs (every 20 of 47 steps an epoch) and at their ends, with seconds of training
        let evals: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|m| m.get("eval").is_some())
            .collect();
        assert_eq!(evals.len(), 4 + 2, "{prop}: {evals:?}");
        assert_eq!(evals.iter().filter(|m| m["within_epoch"] == true).count(), 4);
        let secs: Vec<f64> = evals.iter().map(|m| m["train_s"].as_f64().unwrap()).collect();
        assert!(secs.windows(2).all(|w| w[0] <= w[1]), "{prop}: seconds of training go up: {secs:?}");
        assert_eq!(s["best_epoch"].as_u64().map(|e| e <= 2), Some(true));
        if prop == "clusters" {
            // a run recorded before the proposal option existed resumes as the clusters it used
            let mut cfg = cfg.clone();
            cfg["dis"].as_object_mut().unwrap().remove("proposal");
            cfg.as_object_mut().unwrap().remove("retrieval");
            std::fs::write(out.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
            let mut again: Vec<&str> = args.iter().map(|a| if *a == "2" { "3" } else { a }).collect();
            again.push("--resume");
            ok(&again);
            let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
            assert_eq!(s["epochs"].as_f64(), Some(3.0), "the resumed run trained its third epoch");
        }
        runs.push(out);
    }
    let mut args = vec!["compare"];
    args.extend(runs.iter().map(|r| p(r)));
    let table = ok(&args);
    assert!(table.contains("time to accuracy: to first reach top-1") && table.contains("seconds of training"), "{table}");
    assert_eq!(table.lines().filter(|l| l.starts_with('|') && l.contains("/uniform |")).count(), 2, "{table}");
    // the prior proposal needs a prior; the proposal must be one of four
    let (train, test) = (cache.join("train"), cache.join("test"));
    let base = ["train", "--cache", p(&train), "--eval-cache", p(&test), "--data", p(&data), "--loss", "dis"];
    let x = t.path().join("x");
    let mut args = base.to_vec();
    args.extend(["--dis-proposal", "nearest", "--out", p(&x)]);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nearest"));
    let d2 = t.path().join("d2");
    bad(&["synth", "--out", p(&d2), "--classes", "100", "--coarse", "15"], "multiple of --group");
}

#[test]
fn a_route_of_anchors_switches_caches_at_the_stated_epochs() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 20, 20, 400); // features of dim 20 are the logits of the identity teacher
    // teach keeps the teacher after the anchor epochs
    let teacher = t.path().join("teacher.safetensors");
    let rep: serde_json::Value =
        serde_json::from_str(&ok(&["teach", "--data", p(&d), "--hidden", "16", "--epochs", "3", "--anchors", "1,2", "--out", p(&teacher)])).unwrap();
    assert_eq!(rep["anchors"][0][0], p(&t.path().join("teacher.e1.safetensors")));
    assert!(t.path().join("teacher.e2.safetensors").exists() && teacher.exists());
    bad(&["teach", "--data", p(&d), "--epochs", "2", "--anchors", "2", "--out", p(&teacher)], "--anchors 2");
    // two teachers on the same data: an easy anchor (the raw features as logits) and the final oracle
    let (a, fin) = (t.path().join("anchor"), t.path().join("final"));
    ok(&["cache", "--teacher", "identity", "--data", p(&d), "--out", p(&a), "--top-k", "4"]);
    ok(&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(&fin), "--top-k", "4"]);
    let route = format!("{},{}", p(&a), p(&fin));
    let run = t.path().join("run");
    let common = ["--data", p(&d), "--batch-size", "100", "--epochs", "3", "--loss", "full"];
    ok(&[&["train", "--cache", &route, "--anchor-epochs", "2", "--out", p(&run)][..], &common[..]].concat());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let switches: Vec<(u64, u64, String)> = lines
        .iter()
        .filter(|l| l.get("anchor").is_some())
        .map(|l| (l["anchor"].as_u64().unwrap(), l["step"].as_u64().unwrap(), l["cache"].as_str().unwrap().to_string()))
        .collect();
    // 400 rows in batches of 100: 4 steps an epoch; the anchor trains epochs 1–2, the final cache epoch 3
    assert_eq!(switches, vec![(0, 0, p(&a).to_string()), (1, 8, p(&fin).to_string())]);
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["route"][1]["epoch"], 2);
    assert_eq!(s["steps"], 12);
    // the curves mark the switch; compare prints the route
    assert!(std::fs::read_to_string(run.join("curves.svg")).unwrap().contains("class=\"switch\""));
    assert!(ok(&["compare", p(&run)]).contains("route of"));
    // a resumed run keeps to the route
    let run2 = t.path().join("run2");
    ok(&[&["train", "--cache", &route, "--anchor-epochs", "2", "--out", p(&run2), "--max-steps", "6"][..], &common[..]].concat());
    ok(&[&["train", "--cache", &route, "--anchor-epochs", "2", "--out", p(&run2), "--resume"][..], &common[..]].concat());
    let s2: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run2.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s2["route"], s["route"]);
    // bad input: one line, exit 2
    let other = t.path().join("other");
    synth(&other, 20, 20, 300);
    let oc = t.path().join("other-cache");
    ok(&["cache", "--teacher", "identity", "--data", p(&other), "--out", p(&oc), "--top-k", "4"]);
    let bad_route = format!("{},{}", p(&oc), p(&fin));
    let out = p(&t.path().join("bad")).to_string();
    bad(&[&["train", "--cache", &bad_route, "--out", &out][..], &common[..]].concat(), "route anchor");
    bad(&[&["train", "--cache", &route, "--anchor-epochs", "3", "--out", &out][..], &common[..]].concat(), "--anchor-epochs");
    bad(&[&["train", "--cache", &route, "--anchor-epochs", "1,1", "--out", &out][..], &common[..]].concat(), "--anchor-epochs");
    bad(&[&["train", "--cache", p(&fin), "--anchor-epochs", "1", "--out", &out][..], &common[..]].concat(), "--anchor-epochs");
}

#[test]
fn views_of_an_image_world_are_cached_and_replayed() {
    let t = tempfile::tempdir().unwrap();
    let (d, d2) = (t.path().join("img"), t.path().join("img2"));
    let world = |out: &Path| ok(&["synth", "--out", p(out), "--image", "3x12x12", "--classes", "10", "--train", "300", "--test", "100", "--seed", "4"]);
    world(&d);
    world(&d2);
    for f in ["train_x.npy", "train_y.npy", "test_x.npy", "oracle.safetensors"] {
        assert_eq!(std::fs::read(d.join(f)).unwrap(), std::fs::read(d2.join(f)).unwrap(), "synth --image is deterministic: {f}");
    }
    let c = t.path().join("views");
    let cache = |out: &Path, extra: &[&str]| {
        ok(&[&["cache", "--teacher", p(&d.join("oracle.safetensors")), "--data", p(&d), "--out", p(out), "--top-k", "5", "--seed", "9"][..], extra].concat())
    };
    cache(&c, &["--views", "4", "--augment", "scale=0.5:1,flip=0.5"]);
    ok(&["verify", p(&c)]);
    let rows = rows_json(&c);
    assert_eq!(rows.as_array().unwrap().len(), 1200);
    for (i, r) in rows.as_array().unwrap().iter().enumerate() {
        assert_eq!((r["row"].as_u64().unwrap(), r["view"].as_u64().unwrap()), ((i / 4) as u64, (i % 4) as u64));
        let a: Vec<f64> = r["aug"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(a[0] + a[2] <= 12.0 && a[1] + a[3] <= 12.0 && a[2] * a[3] >= 0.5 * 144.0 - 12.0, "row {i}: {a:?}");
    }
    // the same seed gives the same views; another seed other views
    let (c2, c3) = (t.path().join("views2"), t.path().join("views3"));
    cache(&c2, &["--views", "4", "--augment", "scale=0.5:1,flip=0.5"]);
    assert_eq!(rows_json(&c2), rows);
    ok(&[
        "cache",
        "--teacher",
        p(&d.join("oracle.safetensors")),
        "--data",
        p(&d),
        "--out",
        p(&c3),
        "--top-k",
        "5",
        "--views",
        "4",
        "--augment",
        "scale=0.5:1",
        "--seed",
        "10",
    ]);
    assert_ne!(rows_json(&c3)[0]["aug"], rows[0]["aug"]);
    // train replays one view per example an epoch: 300 examples in batches of 50 are 6 steps an epoch
    let run = t.path().join("run");
    ok(&["train", "--cache", p(&c), "--data", p(&d), "--epochs", "2", "--batch-size", "50", "--loss", "full", "--out", p(&run)]);
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["steps"], 12);
    // bad input: one line, exit 2
    let vec_data = t.path().join("vec");
    synth(&vec_data, 10, 8, 100);
    let out = t.path().join("bad");
    let bad_cache = |data: &Path, extra: &[&str], needle: &str| {
        bad(&[&["cache", "--teacher", "identity", "--data", p(data), "--out", p(&out), "--top-k", "3"][..], extra].concat(), needle);
    };
    bad_cache(&vec_data, &["--views", "2"], "--views needs image rows");
    bad_cache(&d, &["--augment", "flip=0.5"], "--augment needs --views");
    bad_cache(&d, &["--views", "2", "--augment", "scale=0.9:0.2"], "--augment scale");
    bad_cache(&d, &["--views", "2", "--augment", "zoom=2"], "zoom");
    bad_cache(&d, &["--views", "2", "--augment", "flip=1.5"], "flip");
    bad(&["synth", "--out", p(&out), "--image", "3x16"], "--image");
    bad(&["synth", "--out", p(&out), "--image", "3x16x16", "--patch", "17"], "--patch");
}

#[test]
fn an_ensemble_caches_the_mixture_and_trains() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    synth(&d, 20, 20, 400); // features of dim 20: the identity teacher's logits
    let oracle = d.join("oracle.safetensors");
    let ens = ["--teacher", "identity", "--teacher", p(&oracle), "--teacher-weights", "1,3", "--data", p(&d), "--top-k", "5"];
    for format in ["kds", "parquet"] {
        let c = t.path().join(format!("ens-{format}"));
        ok(&[&["cache", "--out", p(&c), "--format", format][..], &ens[..]].concat());
        assert!(ok(&["verify", p(&c)]).starts_with("ok:"));
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.join("_manifest.json")).unwrap()).unwrap();
        assert_eq!(m["format_version"], 4);
        assert_eq!(m["ensemble"].as_array().unwrap().len(), 2);
        assert_eq!(m["ensemble"][1]["weight"], 0.75);
        assert!(ok(&["dump", p(&c), "--rows", "0..1"]).contains("ensemble"));
    }
    let c = t.path().join("ens-kds");
    // the rows at every temperature: top-K and tail sum to one (dump's probabilities per T)
    for r in rows_json(&c).as_array().unwrap().iter().take(50) {
        for ti in 0..3 {
            let top: f64 = r["ranks"].as_array().unwrap().iter().map(|x| x["p"][ti].as_f64().unwrap()).sum();
            let tail = r["tail_mass"][ti].as_f64().unwrap();
            assert!((top + tail - 1.0).abs() < 2e-3, "T index {ti}: {top} + {tail}");
        }
    }
    // parts merge into the same cache
    let parts: Vec<PathBuf> = (0..2).map(|i| t.path().join(format!("part{i}"))).collect();
    for (i, part) in parts.iter().enumerate() {
        ok(&[&["cache", "--out", p(part), "--part", &format!("{i}/2")][..], &ens[..]].concat());
    }
    let merged = t.path().join("merged");
    ok(&["merge", "--out", p(&merged), p(&parts[0]), p(&parts[1])]);
    assert_eq!(rows_json(&merged), rows_json(&c));
    let (mm, mc): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&std::fs::read_to_string(merged.join("_manifest.json")).unwrap()).unwrap(),
        serde_json::from_str(&std::fs::read_to_string(c.join("_manifest.json")).unwrap()).unwrap(),
    );
    for i in 0..2 {
        for key in ["top1_agreement", "mixture_agreement"] {
            let (a, b) = (mm["ensemble"][i][key].as_f64().unwrap(), mc["ensemble"][i][key].as_f64().unwrap());
            assert!((a - b).abs() < 1e-12, "{key} of member {i}: {a} vs {b}");
        }
    }
    // a student trains on the mixture at a temperature after the first
    let run = t.path().join("run");
    ok(&["train", "--cache", p(&c), "--data", p(&d), "--epochs", "1", "--batch-size", "100", "--loss", "full", "--temperature", "4", "--out", p(&run)]);
    // bad input: one line, exit 2
    let other = t.path().join("other");
    synth(&other, 12, 20, 100); // an oracle of 12 classes over the same features
    let out = t.path().join("bad");
    let base = ["cache", "--data", p(&d), "--out", p(&out), "--top-k", "3", "--teacher", "identity"];
    bad(&[&base[..], &["--teacher", p(&other.join("oracle.safetensors"))]].concat(), "different class counts");
    bad(&[&base[..], &["--teacher", p(&oracle), "--teacher-weights", "1"]].concat(), "--teacher-weights");
    bad(&[&base[..], &["--teacher", p(&oracle), "--teacher-weights", "1,-2"]].concat(), "--teacher-weights");
    bad(&[&base[..], &["--teacher-weights", "1"]].concat(), "--teacher-weights");
    bad(&[&base[..], &["--teacher", p(&oracle), "--tail-samples", "4"]].concat(), "--tail-samples");
}
