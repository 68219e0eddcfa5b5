//! `train --resume` continues bit for bit, for every estimator: a run stopped inside the first epoch,
//! exactly at the epoch boundary, right after the `dis` sampler's sweep over all classes completes, or
//! inside the second epoch (with `--max-steps`), or killed with SIGKILL at a random moment, and then
//! resumed, exports the same bytes as the uninterrupted run.
#![cfg(feature = "torch")]
mod cli_common;
use cli_common::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// 2,000 classes, 1,250 rows: an epoch is 20 steps of 64 rows (the last one 34), 2 epochs 40 steps.
const CLASSES: usize = 2000;
const STEPS_PER_EPOCH: usize = 20;
/// `dis` with 200 shared columns: sparse steps whose rotating re-assignment sweep advances by 128
/// classes a step (256 re-assigned, half of them the step's own rows), so it passes over all 2,000
/// classes, and the cluster statistics are recomputed, at step 16.
const SWEEP_STEP: usize = 16;

struct Problem {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    cache: PathBuf,
}

fn problem() -> Problem {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let data = root.join("data");
    ok(&["synth", "--out", p(&data), "--classes", &CLASSES.to_string(), "--dim", "8", "--train", "1250", "--test", "200", "--group", "5"]);
    let cache = root.join("cache");
    // tail samples for rs (drawn at the first temperature, 1, which every run below trains at)
    ok(&["cache", "--teacher", p(&data.join("oracle.safetensors")), "--data", p(&data), "--out", p(&cache), "--top-k", "4", "--tail-samples", "2"]);
    Problem { _dir: dir, root, data, cache }
}

/// The estimators, as the extra `train` options of each.
const ESTIMATORS: [(&str, &[&str]); 6] = [
    ("dis", &["--loss", "dis", "--candidates", "200"]),
    ("dis-bucket", &["--loss", "dis", "--candidates", "200", "--dis-tail", "bucket"]),
    ("full", &["--loss", "full"]),
    ("ghost", &["--loss", "ghost"]),
    ("topk", &["--loss", "topk"]),
    ("rs", &["--loss", "rs"]),
];

fn train_args(pb: &Problem, est: &[&str], out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<&str> = vec!["train", "--cache", p(&pb.cache), "--data", p(&pb.data), "--out", p(out)];
    a.extend(["--temperature", "1", "--epochs", "2", "--batch-size", "64", "--checkpoint-every", "3", "--seed", "4"]);
    a.extend(est);
    a.extend(extra);
    a.iter().map(|s| s.to_string()).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn export(run: &Path) -> Vec<u8> {
    let out = run.with_extension("safetensors");
    ok(&["export", p(run), "--out", p(&out)]);
    std::fs::read(&out).unwrap()
}

/// `[step, epoch, step in epoch]` and the `dis` sweep's cursor of a run's checkpoint.
fn progress(run: &Path) -> (Vec<i64>, Option<i64>) {
    let bytes = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ints = |n: &str| st.tensor(n).ok().map(|t| bytemuck::pod_collect_to_vec::<u8, i64>(t.data()));
    (ints("state").unwrap(), ints("dis_cursor").map(|c| c[0]))
}

#[test]
fn every_estimator_resumes_bit_for_bit_from_any_stop() {
    let pb = problem();
    let stops = [(7, "inside epoch 1"), (STEPS_PER_EPOCH, "at the epoch boundary"), (SWEEP_STEP, "right after a sweep"), (27, "inside epoch 2")];
    let mut failures = vec![];
    for (name, est) in ESTIMATORS {
        let reference = pb.root.join(format!("ref-{name}"));
        ok(&strs(&train_args(&pb, est, &reference, &[])));
        assert_eq!(progress(&reference).0, vec![2 * STEPS_PER_EPOCH as i64, 2, 0], "{name}: the run is not 2 epochs of {STEPS_PER_EPOCH} steps");
        let want = export(&reference);
        assert_eq!(want, export(&reference), "{name}: two exports of one run differ");
        for (stop, what) in stops {
            let run = pb.root.join(format!("{name}-{stop}"));
            ok(&strs(&train_args(&pb, est, &run, &["--max-steps", &stop.to_string()])));
            let (state, cursor) = progress(&run);
            assert_eq!(state[0], stop as i64, "{name}: stopped at the wrong step");
            if name.starts_with("dis") && stop == SWEEP_STEP {
                // the sweep wrapped around at this very step (it moves 128 classes a step)
                assert!(cursor.unwrap() < 128, "{name}: step {stop} is not right after a sweep (cursor {cursor:?})");
            }
            ok(&strs(&train_args(&pb, est, &run, &["--resume"])));
            if export(&run) != want {
                failures.push(format!("{name} stopped at step {stop} ({what})"));
            }
        }
    }
    assert!(failures.is_empty(), "resumed runs differ from the uninterrupted ones: {}", failures.join("; "));
}

#[test]
fn every_estimator_resumes_bit_for_bit_after_kill_9() {
    let pb = problem();
    // a different moment on every run of the test
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64 | 1;
    let mut uniform = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let total = 2 * STEPS_PER_EPOCH as i64;
    let mut failures = vec![];
    for (name, est) in ESTIMATORS {
        let reference = pb.root.join(format!("ref-{name}"));
        ok(&strs(&train_args(&pb, est, &reference, &[])));
        let want = export(&reference);
        let run = pb.root.join(format!("killed-{name}"));
        let args = train_args(&pb, est, &run, &["--resume"]);
        // SIGKILL at a random moment after the checkpoint of a random step (so the kill interrupts the
        // run: between checkpoints, or while one is written); a run that finishes first is started again
        let ckpt = run.join("checkpoint.safetensors");
        let mut killed_after = None;
        for _ in 0..10 {
            let _ = std::fs::remove_dir_all(&run);
            let target = 1 + (uniform() * (total - 4) as f64) as i64;
            let mut child = kd().args(&args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
            let t0 = Instant::now();
            let mut finished = false;
            while !(ckpt.exists() && std::fs::read(&ckpt).ok().and_then(|b| step_of(&b)).is_some_and(|s| s >= target)) {
                if child.try_wait().unwrap().is_some() || t0.elapsed().as_secs() > 120 {
                    finished = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            std::thread::sleep(std::time::Duration::from_millis((uniform() * 30.0) as u64));
            if finished || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let at = progress(&run).0[0];
            if at < total {
                killed_after = Some(at);
                break;
            }
        }
        let Some(at) = killed_after else { panic!("{name}: no kill landed before the run finished") };
        ok(&strs(&args));
        if export(&run) != want {
            failures.push(format!("{name} killed after the checkpoint of step {at}"));
        }
    }
    assert!(failures.is_empty(), "killed and resumed runs differ from the uninterrupted ones: {}", failures.join("; "));
}

/// The step a checkpoint's bytes record (None for a file that is not yet whole).
fn step_of(bytes: &[u8]) -> Option<i64> {
    let st = safetensors::SafeTensors::deserialize(bytes).ok()?;
    Some(bytemuck::pod_collect_to_vec::<u8, i64>(st.tensor("state").ok()?.data())[0])
}
