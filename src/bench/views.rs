//! Augmented views, measured: on an image world (`synth --image`: class templates at random places), a
//! student distilled from caches of 1, 4, 16 views per example (and of the examples as they are) at equal
//! steps, against the online reference — the live teacher's targets for a new augmentation of every
//! example each epoch, which a cache of as many views as epochs holds exactly (each epoch replays views
//! no epoch saw before). Per run: the held-out top-1 of the student on the un-augmented test images, the
//! teacher's agreement with the labels on the views it saw, and the cache's bytes per image per view.
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::data::augment::AugmentSpec;
use crate::data::synth::{SynthConfig, generate};
use crate::error::Result;
use crate::format::writer::WriterOptions;
use crate::format::{LogitDtype, Manifest};
use crate::sample::DisConfig;
use crate::teacher::pipeline::{CacheOptions, build_cache};
use crate::train::loss::Estimator;

#[derive(Debug, Clone, Serialize)]
pub struct ViewsRow {
    /// `as is` (no views), `V views`, or `online` (a view no epoch saw before, every epoch).
    pub run: String,
    /// Views per example in the cache (0: the examples as they are).
    pub views: u32,
    pub epochs: usize,
    pub steps: u64,
    /// The student's held-out top-1 (un-augmented test images).
    pub top1: f64,
    /// The teacher's top-1 agreement with the labels over the rows it cached (its views).
    pub teacher_top1: f64,
    /// Cache bytes per example and view (shard files, all temperatures).
    pub bytes_per_view: f64,
    pub cache_s: f64,
    pub train_s: f64,
}

/// The world and the runs of the views table.
#[derive(Debug, Clone)]
pub struct ViewsOptions {
    pub classes: usize,
    pub image: [usize; 3],
    pub patch: usize,
    pub noise: f32,
    pub train: usize,
    pub test: usize,
    pub epochs: usize,
    pub views: Vec<u32>,
    pub augment: AugmentSpec,
}

impl Default for ViewsOptions {
    fn default() -> Self {
        ViewsOptions {
            classes: 20,
            image: [3, 12, 12],
            patch: 6,
            noise: 1.0,
            train: 40_000,
            test: 2_000,
            epochs: 32,
            views: vec![1, 4, 16],
            augment: AugmentSpec { scale: (0.35, 1.0), ..Default::default() },
        }
    }
}

pub fn views(o: &ViewsOptions, out: &Path) -> Result<Vec<ViewsRow>> {
    let dir = out.join("views");
    let data = dir.join("data");
    let [c, _, _] = o.image;
    let cfg = SynthConfig {
        classes: o.classes,
        dim: c * o.patch * o.patch,
        train: o.train,
        test: o.test,
        seed: 1,
        noise: o.noise,
        image: Some(o.image),
        patch: o.patch,
        ..Default::default()
    };
    generate(&cfg, &data)?;
    let teacher = data.join("oracle.safetensors");
    let mut runs: Vec<(String, u32)> = vec![("as is".into(), 0)];
    runs.extend(o.views.iter().map(|&v| (format!("{v} view{}", if v == 1 { "" } else { "s" }), v)));
    runs.push(("online".into(), o.epochs as u32));
    let mut rows = vec![];
    for (run, v) in runs {
        let cache = dir.join(format!("cache_v{v}"));
        let _ = std::fs::remove_dir_all(&cache);
        eprintln!("  views: {run}: caching {} rows", o.train * v.max(1) as usize);
        let t0 = Instant::now();
        let (m, _) = build_cache(&CacheOptions {
            teachers: vec![teacher.to_string_lossy().into()],
            teacher_weights: vec![],
            data: data.clone(),
            labels: None,
            split: "train".into(),
            out: cache.clone(),
            k: o.classes,
            temperatures: vec![1.0, 2.0, 4.0],
            tail_samples: 0,
            dtype: LogitDtype::F16,
            writer: WriterOptions::default(),
            device: tch::Device::Cpu,
            batch_size: None,
            part: None,
            nan: crate::teacher::pipeline::NanPolicy::Fail,
            seed: 0,
            views: v,
            augment: (v > 0).then(|| o.augment.clone()),
            progress: false,
        })?;
        let cache_s = t0.elapsed().as_secs_f64();
        eprintln!("  views: {run}: training {} epochs", o.epochs);
        let s =
            super::train_student(&data, &cache, None, "mlp:256", Estimator::Full, DisConfig::default(), 2.0, o.epochs, 0, &dir.join(format!("train_v{v}")))?;
        rows.push(ViewsRow {
            run,
            views: v,
            epochs: o.epochs,
            steps: s.steps,
            top1: s.top1.unwrap_or(f64::NAN),
            teacher_top1: m.stats.top1_agreement.unwrap_or(f64::NAN),
            bytes_per_view: bytes(&m) as f64 / m.rows.max(1) as f64,
            cache_s,
            train_s: s.wall_s,
        });
    }
    Ok(rows)
}

fn bytes(m: &Manifest) -> u64 {
    m.shards.iter().map(|s| s.bytes).sum()
}
