//! Ensembles, measured: three teachers trained on one world (`synth`, different seeds and widths), a
//! student distilled from each one's cache and from the cache of their mixture, at equal steps. Per run:
//! the teacher's held-out top-1 (a member's, or the mixture's argmax), and the student's.
use std::path::Path;

use serde::Serialize;

use crate::data::synth::{SynthConfig, generate};
use crate::error::Result;
use crate::format::LogitDtype;
use crate::format::writer::WriterOptions;
use crate::sample::DisConfig;
use crate::teacher::pipeline::{CacheOptions, NanPolicy, build_cache};
use crate::teacher::teach::{TeachOptions, teach};
use crate::train::loss::Estimator;

#[derive(Debug, Clone, Serialize)]
pub struct EnsembleRow {
    /// `teacher i (hidden …)` or `ensemble of 3`.
    pub teacher: String,
    /// The teacher's held-out top-1 (the mixture's argmax for the ensemble).
    pub teacher_top1: f64,
    pub student: String,
    pub steps: u64,
    pub student_top1: f64,
}

#[derive(Debug, Clone)]
pub struct EnsembleOptions {
    pub classes: usize,
    pub train: usize,
    /// The members' hidden layers (one teacher each, seeds 0, 1, 2, …).
    pub hidden: Vec<Vec<i64>>,
    pub teacher_epochs: usize,
    pub student_epochs: usize,
    pub students: Vec<String>,
}

impl Default for EnsembleOptions {
    fn default() -> Self {
        EnsembleOptions {
            classes: 1000,
            train: 40_000,
            hidden: vec![vec![256], vec![512], vec![256, 256]],
            teacher_epochs: 8,
            student_epochs: 6,
            students: vec!["mlp:32".into(), "mlp:256".into()],
        }
    }
}

fn cache(teachers: Vec<String>, data: &Path, split: &str, out: &Path) -> Result<crate::format::Manifest> {
    let _ = std::fs::remove_dir_all(out);
    let (m, _) = build_cache(&CacheOptions {
        teachers,
        teacher_weights: vec![],
        data: data.into(),
        labels: None,
        split: split.into(),
        out: out.into(),
        k: 64,
        temperatures: vec![1.0, 2.0, 4.0],
        tail_samples: 0,
        dtype: LogitDtype::F16,
        writer: WriterOptions::default(),
        device: tch::Device::Cpu,
        batch_size: None,
        part: None,
        nan: NanPolicy::Fail,
        seed: 0,
        views: 0,
        augment: None,
        progress: false,
    })?;
    Ok(m)
}

pub fn ensemble(o: &EnsembleOptions, out: &Path) -> Result<Vec<EnsembleRow>> {
    let dir = out.join("ensemble");
    let data = dir.join("data");
    generate(&SynthConfig { classes: o.classes, train: o.train, test: o.train / 4, seed: 3, ..Default::default() }, &data)?;
    let mut members = vec![];
    for (i, hidden) in o.hidden.iter().enumerate() {
        let path = dir.join(format!("teacher{i}.safetensors"));
        eprintln!("  ensemble: teaching teacher {i} (hidden {hidden:?}, {} epochs)", o.teacher_epochs);
        let r = teach(&TeachOptions {
            data: data.clone(),
            labels: None,
            eval_data: None,
            eval_labels: None,
            hidden: hidden.clone(),
            classes: None,
            epochs: o.teacher_epochs,
            batch_size: 256,
            lr: 1e-3,
            seed: i as u64,
            device: tch::Device::Cpu,
            out: path.clone(),
            anchors: vec![],
            progress: false,
        })?;
        let name = format!("teacher {i} (hidden {})", hidden.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(","));
        members.push((name, path.to_string_lossy().to_string(), r.test_top1.unwrap_or(f64::NAN)));
    }
    let mut runs: Vec<(String, Vec<String>, f64)> = members.iter().map(|(n, p, a)| (n.clone(), vec![p.clone()], *a)).collect();
    let all: Vec<String> = members.iter().map(|m| m.1.clone()).collect();
    eprintln!("  ensemble: caching the mixture of {} on the held-out split", all.len());
    let held_out = cache(all.clone(), &data, "test", &dir.join("cache_ensemble_test"))?;
    runs.push((format!("ensemble of {}", all.len()), all, held_out.stats.top1_agreement.unwrap_or(f64::NAN)));
    let mut rows = vec![];
    for (i, (name, teachers, teacher_top1)) in runs.into_iter().enumerate() {
        eprintln!("  ensemble: caching {name}");
        let c = dir.join(format!("cache{i}"));
        cache(teachers, &data, "train", &c)?;
        for student in &o.students {
            eprintln!("  ensemble: {student} from {name}, {} epochs", o.student_epochs);
            let s = super::train_student(
                &data,
                &c,
                None,
                student,
                Estimator::Full,
                DisConfig::default(),
                4.0,
                o.student_epochs,
                0,
                &dir.join(format!("train{i}_{}", student.replace(':', ""))),
            )?;
            rows.push(EnsembleRow { teacher: name.clone(), teacher_top1, student: student.clone(), steps: s.steps, student_top1: s.top1.unwrap_or(f64::NAN) });
        }
    }
    Ok(rows)
}
