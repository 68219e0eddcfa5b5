//! `kdcache bench`: the figures users choose a method and a cache budget by, measured side by side in
//! one run, written as `bench.md` and `bench.json` (keys documented on [`BenchReport`] and the row
//! types). One file per table: [`fidelity`], [`speed`], [`io`], [`quality`], [`proposals`], [`views`], [`ensemble`].
pub mod ensemble;
pub mod fidelity;
pub mod io;
pub mod proposals;
pub mod quality;
pub mod speed;
pub mod views;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::sample::DisConfig;
use crate::train::loss::Estimator;
pub use ensemble::{EnsembleOptions, EnsembleRow};
pub use fidelity::FidelityRow;
pub use io::{IoRow, realistic_rows};
pub use proposals::ProposalRow;
pub use quality::QualityRow;
pub use speed::SpeedRow;
pub use views::{ViewsOptions, ViewsRow};

/// `bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub command: String,
    pub machine: String,
    pub threads: usize,
    /// Gradient fidelity (head and backbone) against the cache-based `full` gradient and the true teacher.
    pub fidelity: Vec<FidelityRow>,
    /// Time per step vs class count.
    pub speed: Vec<SpeedRow>,
    /// The fixed `dis` budget of the step-time table (head rows per step).
    pub speed_fixed_budget: usize,
    /// Cache I/O: C = 131072, K = 64, f16 logits, 3 temperatures.
    pub io: Vec<IoRow>,
    /// Student quality per estimator after the same number of steps (empty if no cache was given).
    pub quality: Vec<QualityRow>,
    /// The `dis` proposals' gradient fidelity on a uniform and a power-law world.
    pub proposals: Vec<ProposalRow>,
    /// Students distilled from augmented views of an image world, against the online reference.
    pub views: Vec<ViewsRow>,
    /// Students distilled from each of three teachers and from their mixture.
    pub ensemble: Vec<EnsembleRow>,
}

pub struct BenchOptions {
    /// Class counts of the fidelity table.
    pub fidelity_classes: Vec<usize>,
    /// Cached ranks K of the fidelity table.
    pub fidelity_k: Vec<usize>,
    /// i.i.d. draws averaged for the sampled estimators.
    pub draws: usize,
    /// Class counts of the step-time table, and its fixed `dis` budget.
    pub speed_classes: Vec<usize>,
    pub fixed_budget: usize,
    pub reps: usize,
    pub io_rows: usize,
    /// (data, train cache, eval cache) for the quality table.
    pub quality: Option<(PathBuf, PathBuf, PathBuf)>,
    pub quality_steps: usize,
    /// Class count and cached ranks of the proposals table.
    pub proposal_classes: usize,
    pub proposal_k: usize,
    /// The views table's world and runs.
    pub views: ViewsOptions,
    /// The ensemble table's world, teachers and students.
    pub ensemble: EnsembleOptions,
    /// The tables to run (fidelity, speed, io, quality, proposals, views, ensemble); the others are left
    /// empty.
    pub only: Vec<String>,
}

/// Trains a built-in `student` (`train`'s defaults otherwise: α = 0.9, B = 256, Adam at 1e-3) on
/// `cache` at `temperature` for `epochs` (or `max_steps` steps, when not 0) from scratch in `out`; the
/// bench tables' one trainer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_student(
    data: &Path,
    cache: &Path,
    eval_cache: Option<&Path>,
    student: &str,
    loss: Estimator,
    dis: DisConfig,
    temperature: f64,
    epochs: usize,
    max_steps: usize,
    out: &Path,
) -> Result<crate::train::Summary> {
    let _ = std::fs::remove_dir_all(out);
    crate::train::train(&crate::train::TrainOptions {
        cache: cache.into(),
        anchors: vec![],
        anchor_epochs: vec![],
        data: data.into(),
        labels: None,
        eval_data: None,
        eval_labels: None,
        eval_cache: eval_cache.map(Into::into),
        student: Some(student.into()),
        student_ts: None,
        loss,
        dis,
        temperature,
        alpha: 0.9,
        epochs,
        batch_size: 256,
        lr: 1e-3,
        head_opt: crate::train::optim::OptKind::Adam,
        head_lr: crate::train::default_head_lr(loss),
        seed: 0,
        device: "cpu".into(),
        out: out.into(),
        checkpoint_every: 0,
        log_every: 50,
        max_steps,
        eval_every: 0,
        retrieval: false,
        resume: false,
        overwrite: false,
        progress: false,
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    format!("{} cores, {cpu}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or("–".into())
}

pub fn markdown(r: &BenchReport) -> String {
    let mut s = format!("# kdcache bench\n\n`{}` on {} ({} threads).\n\n", r.command, r.machine, r.threads);
    if !r.fidelity.is_empty() {
        s += "## 1. Gradient fidelity (T = 2, B = 256, d = 64; against the cache-based `full` gradient unless said)\n\n";
        s += "`dis` runs at a budget of 5% of C shared columns per step; its mean is over i.i.d. draws with the proposal \
    frozen (its variants use 1/16 of the draws). `1 draw` is the mean over draws of one draw's angle. Norm ratio = \
    ‖estimate‖/‖reference‖. `head ∠ true` / `bb ∠ true`: the mean gradient against the true teacher's.\n\n";
        s += "| C | teacher | K | estimator | head rows (% of C) | draws | head ∠ 1 draw | head ratio | head ∠ mean | bb ∠ 1 draw | bb ratio | bb ∠ mean | head ∠ true | bb ∠ true |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
        for f in &r.fidelity {
            s += &format!(
                "| {} | {} | {} | {} | {:.0} ({:.1}%) | {} | {:.2}° | {:.3} | {:.2}° | {:.2}° | {:.3} | {:.2}° | {:.2}° | {:.2}° |\n",
                f.classes,
                f.teacher,
                f.k,
                f.estimator,
                f.head_rows,
                f.head_rows_pct,
                f.draws,
                f.head_angle_1,
                f.head_ratio_1,
                f.head_angle_mean,
                f.bb_angle_1,
                f.bb_ratio_1,
                f.bb_angle_mean,
                f.head_angle_true,
                f.bb_angle_true
            );
        }
    }
    if !r.speed.is_empty() {
        s += &format!(
            "\n## 2. Step time vs class count (B = 256, d = 256, K = 64; `dis fixed` = {} head rows at every C, `dis 2%` = 2% of C)\n\n",
            r.speed_fixed_budget
        );
        s += "| C | estimator | head rows | head+loss+opt ms | whole step ms | speed-up (head) | speed-up (step) |\n|---|---|---|---|---|---|---|\n";
        for v in &r.speed {
            s += &format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} |\n",
                v.classes,
                v.estimator,
                v.head_rows,
                v.head_ms,
                v.step_ms,
                opt(v.speedup_head, |x| format!("{x:.1}×")),
                opt(v.speedup_step, |x| format!("{x:.1}×"))
            );
        }
    }
    if !r.io.is_empty() {
        s += "\n## 3. Cache I/O (C = 131072, K = 64, f16 logits, 3 temperatures; 2 reader threads)\n\n";
        s += "| encoding | rows | bytes/row | write rows/s | scan rows/s | block-shuffled rows/s | verify rows/s | pyarrow → numpy rows/s | kdcache / pyarrow |\n|---|---|---|---|---|---|---|---|---|\n";
        for v in &r.io {
            let py = opt(v.pyarrow_rows_per_s, |p| format!("{p:.0}"));
            let ratio = opt(v.pyarrow_rows_per_s, |p| format!("{:.2}×", v.scan_rows_per_s / p));
            s += &format!(
                "| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {py} | {ratio} |\n",
                v.encoding, v.rows, v.bytes_per_row, v.write_rows_per_s, v.scan_rows_per_s, v.shuffled_rows_per_s, v.verify_rows_per_s
            );
        }
    }
    if !r.quality.is_empty() {
        s += &format!("\n## 4. Student quality at equal steps (C = {}, held-out, full-softmax evaluation)\n\n", r.quality[0].classes);
        s += "| run | steps | top-1 | top-1 many/medium/few | top-5 | ECE | ms/step | head rows/step | wall s |\n|---|---|---|---|---|---|---|---|---|\n";
        let f = |x: Option<f64>| x.map(|x| format!("{x:.3}")).unwrap_or("–".into());
        for q in &r.quality {
            let bands = q.bands.map(|b| format!("{}/{}/{}", f(b.many), f(b.medium), f(b.few))).unwrap_or("–".into());
            s += &format!(
                "| {} | {} | {:.4} | {bands} | {:.4} | {:.4} | {:.2} | {:.0} | {:.0} |\n",
                q.run, q.steps, q.top1, q.top5, q.ece, q.step_ms_median, q.head_rows, q.wall_s
            );
        }
    }
    if !r.proposals.is_empty() {
        let p0 = &r.proposals[0];
        s += &format!(
            "\n## 5. dis proposals (C = {}, K = {}, T = 2, B = 256; {} draws, proposal frozen; angles against the cache-based `full` gradient). Budget `5%`: 5% of C shared columns (the batch's ranked classes subsampled); `auto`: all of them plus the default sampled classes\n\n",
            p0.classes, p0.k, p0.draws
        );
        s += "| world | teacher | budget | proposal | head rows | head ∠ 1 draw | head ∠ mean | bb ∠ 1 draw | bb ∠ mean |\n|---|---|---|---|---|---|---|---|---|\n";
        for p in &r.proposals {
            s += &format!(
                "| {} | {} | {} | {} | {:.0} | {:.2}° | {:.2}° | {:.2}° | {:.2}° |\n",
                p.world, p.teacher, p.budget, p.proposal, p.head_rows, p.head_angle_1, p.head_angle_mean, p.bb_angle_1, p.bb_angle_mean
            );
        }
    }
    if !r.views.is_empty() {
        let v0 = &r.views[0];
        s += &format!(
            "\n## 6. Augmented views (image world; `full` KD, T = 2, B = 256, {} epochs, equal steps; held-out top-1 on un-augmented images). `online`: a view no epoch saw before, every epoch (the live teacher on fresh augmentations)\n\n",
            v0.epochs
        );
        s += "| run | views | steps | student top-1 | teacher top-1 on its views | bytes per image per view | cache s | train s |\n|---|---|---|---|---|---|---|---|\n";
        for v in &r.views {
            s += &format!(
                "| {} | {} | {} | {:.4} | {:.4} | {:.1} | {:.1} | {:.1} |\n",
                v.run, v.views, v.steps, v.top1, v.teacher_top1, v.bytes_per_view, v.cache_s, v.train_s
            );
        }
    }
    if !r.ensemble.is_empty() {
        s += "\n## 7. Ensembles (`full` KD, T = 4, equal steps; held-out top-1). Teachers: built-in MLPs on one world, seeds 0, 1, 2; the ensemble: their equal-weight mixture of tempered distributions\n\n";
        s += "| teacher | teacher top-1 | student | steps | student top-1 |\n|---|---|---|---|---|\n";
        for e in &r.ensemble {
            s += &format!("| {} | {:.4} | {} | {} | {:.4} |\n", e.teacher, e.teacher_top1, e.student, e.steps, e.student_top1);
        }
    }
    s
}

pub fn run_tables(out: &Path, o: &BenchOptions) -> Result<BenchReport> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let on = |t: &str| o.only.iter().any(|x| x == t);
    let report = BenchReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        threads: tch::get_num_threads() as usize,
        fidelity: if !on("fidelity") {
            vec![]
        } else {
            eprintln!("bench 1/7: gradient fidelity at C = {:?}, K = {:?}", o.fidelity_classes, o.fidelity_k);
            fidelity::fidelity(&o.fidelity_classes, &o.fidelity_k, o.draws, true)?
        },
        speed: if !on("speed") {
            vec![]
        } else {
            eprintln!("bench 2/7: step time at C = {:?}", o.speed_classes);
            speed::speed(&o.speed_classes, o.fixed_budget, o.reps)?
        },
        speed_fixed_budget: o.fixed_budget,
        io: if !on("io") {
            vec![]
        } else {
            eprintln!("bench 3/7: cache I/O, {} rows", o.io_rows);
            io::io(o.io_rows, out)?
        },
        quality: match &o.quality {
            _ if !on("quality") => vec![],
            Some((d, c, e)) if crate::format::manifest::manifest_path(c).exists() => {
                eprintln!("bench 4/7: student quality, {} steps per estimator", o.quality_steps);
                quality::quality(d, c, e, o.quality_steps, out)?
            }
            _ => {
                eprintln!("bench 4/7: skipped (no cache at {}; run make cache)", o.quality.as_ref().map(|q| q.1.display().to_string()).unwrap_or_default());
                vec![]
            }
        },
        proposals: if !on("proposals") {
            vec![]
        } else {
            eprintln!("bench 5/7: dis proposals at C = {}, K = {}", o.proposal_classes, o.proposal_k);
            proposals::proposals(o.proposal_classes, o.proposal_k, (o.draws / 4).max(4), true)?
        },
        views: if !on("views") {
            vec![]
        } else {
            eprintln!("bench 6/7: augmented views on an image world ({} examples, {} epochs)", o.views.train, o.views.epochs);
            views::views(&o.views, out)?
        },
        ensemble: if !on("ensemble") {
            vec![]
        } else {
            eprintln!("bench 7/7: ensembles of {} teachers on C = {}", o.ensemble.hidden.len(), o.ensemble.classes);
            ensemble::ensemble(&o.ensemble, out)?
        },
    };
    let md = markdown(&report);
    crate::fsio::write_atomic(&out.join("bench.md"), md.as_bytes())?;
    let js = serde_json::to_vec_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?;
    crate::fsio::write_atomic(&out.join("bench.json"), &js)?;
    Ok(report)
}
