//! `kdcache teach`: trains the built-in MLP teacher with full softmax cross-entropy on labels.
use std::path::PathBuf;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Device, Tensor, nn, nn::OptimizerConfig};

use crate::data::source::Dataset;
use crate::error::{Error, Result};
use crate::nn::{Mlp, rows_tensor, save_atomic};

pub struct TeachOptions {
    pub data: PathBuf,
    /// Labels for a features `.npy`.
    pub labels: Option<PathBuf>,
    /// Held-out data (default: the test split of a synth directory) and its labels.
    pub eval_data: Option<PathBuf>,
    pub eval_labels: Option<PathBuf>,
    pub hidden: Vec<i64>,
    /// Output classes (`--classes`); None: the largest training label + 1.
    pub classes: Option<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub device: Device,
    pub out: PathBuf,
    /// Epochs after which the teacher is also kept, at [`anchor_path`] (route anchors).
    pub anchors: Vec<usize>,
    pub progress: bool,
}

/// Where `teach --anchors` keeps the teacher after epoch `epoch`: `out`'s name with `.e<epoch>` before
/// its extension.
pub fn anchor_path(out: &std::path::Path, epoch: usize) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let ext = out.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    out.with_file_name(format!("{stem}.e{epoch}{ext}"))
}

#[derive(Debug, serde::Serialize)]
pub struct TeachReport {
    pub classes: i64,
    pub epochs: usize,
    pub test_top1: Option<f64>,
    pub train_rows: usize,
    /// The route anchors kept (`--anchors`), with each one's held-out top-1.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anchors: Vec<(PathBuf, Option<f64>)>,
}

/// Top-1 accuracy of `f` over a labelled dataset, in batches.
pub fn accuracy(ds: &Dataset, device: Device, f: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Option<f64>> {
    let Some(y) = &ds.y else { return Ok(None) };
    let _g = tch::no_grad_guard();
    let (mut right, mut n) = (0i64, 0i64);
    let mut buf = vec![];
    for lo in (0..ds.len()).step_by(4096) {
        let hi = (lo + 4096).min(ds.len());
        let pred = f(&rows_tensor(ds, lo..hi, &mut buf, device)?)?.f_argmax(-1, false)?.f_to_device(Device::Cpu)?;
        let pred: Vec<i64> = Vec::<i64>::try_from(&pred).map_err(Error::from)?;
        for (p, t) in pred.iter().zip(&y[lo..hi]) {
            if *t >= 0 {
                n += 1;
                right += (p == t) as i64;
            }
        }
    }
    Ok((n > 0).then(|| right as f64 / n as f64))
}

/// Refuses a dataset with a label at or above `classes` (or below −1), naming the first such row and
/// the option that set the count.
pub fn check_labels_below(ds: &Dataset, classes: usize, option: &str) -> Result<()> {
    if let Some(y) = &ds.y
        && let Some((i, &l)) = y.iter().enumerate().find(|(_, l)| **l < -1 || **l >= classes as i64)
    {
        return Err(Error::invalid(format!(
            "{}: label {l} of row {i} is not a class of {option} {classes} (labels are 0..{classes}, or -1 = unknown)",
            ds.source.display()
        )));
    }
    Ok(())
}

pub fn teach(o: &TeachOptions) -> Result<TeachReport> {
    let train = Dataset::open(&o.data, o.labels.as_deref(), "train")?;
    let eval_path = o.eval_data.clone().or_else(|| (o.data.is_dir() && o.data.join("test_x.npy").exists()).then(|| o.data.clone()));
    let test = eval_path.as_deref().map(|p| Dataset::open(p, o.eval_labels.as_deref(), "test")).transpose()?;
    if let Some(t) = &test
        && t.y.is_none()
    {
        return Err(Error::invalid(format!("the held-out data {} has no labels: pass --eval-labels", t.source.display())));
    }
    let y = train.y.as_ref().ok_or_else(|| Error::invalid(format!("teach needs labels: pass --labels for {}", train.source.display())))?;
    let classes = match o.classes {
        Some(n) => {
            if n < 2 {
                return Err(Error::invalid(format!("--classes {n}: a teacher needs at least 2 classes")));
            }
            check_labels_below(&train, n, "--classes")?;
            if let Some(t) = &test {
                check_labels_below(t, n, "--classes")?;
            }
            n as i64
        }
        None => y.iter().copied().max().unwrap_or(-1) + 1,
    };
    if classes < 2 {
        return Err(Error::invalid("teach needs at least 2 classes in the labels"));
    }
    if o.batch_size == 0 || o.epochs == 0 {
        return Err(Error::invalid("--batch-size and --epochs must be at least 1"));
    }
    if let Some(e) = o.anchors.iter().find(|&&e| e == 0 || e >= o.epochs) {
        return Err(Error::invalid(format!("--anchors {e}: an anchor is an epoch before the last, 1..{} (--epochs {})", o.epochs, o.epochs)));
    }
    let mut anchors = vec![];
    tch::manual_seed(o.seed as i64);
    let in_dim: i64 = train.feature_shape().iter().product::<usize>() as i64;
    let mut dims = vec![in_dim];
    dims.extend(&o.hidden);
    dims.push(classes);
    let vs = nn::VarStore::new(o.device);
    let net = Mlp::new(&vs.root(), &dims, false);
    let mut opt = nn::Adam::default().build(&vs, o.lr)?;
    // rows of unknown label (−1) do not train the teacher
    let mut order: Vec<usize> = (0..train.len()).filter(|&i| y[i] >= 0).collect();
    if order.is_empty() {
        return Err(Error::invalid(format!("{}: no row has a known label (all -1)", train.source.display())));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed);
    let mut buf = vec![];
    let mut test_top1 = None;
    for epoch in 0..o.epochs {
        order.shuffle(&mut rng);
        let mut bar = crate::progress::Progress::new(train.len() as u64, "teach", "rows", o.progress);
        bar.set_message(format!("epoch {}/{}", epoch + 1, o.epochs));
        let mut loss_sum = 0.0;
        let mut steps = 0;
        for chunk in order.chunks(o.batch_size) {
            // gather the shuffled rows
            let mut xs = Vec::with_capacity(chunk.len() * in_dim as usize);
            for &i in chunk {
                train.x.f32_rows(i..i + 1, &mut buf);
                xs.extend_from_slice(&buf);
            }
            let x = Tensor::f_from_slice(&xs)?.f_reshape([chunk.len() as i64, in_dim])?.f_to_device(o.device)?;
            let t = Tensor::f_from_slice(&chunk.iter().map(|&i| y[i]).collect::<Vec<_>>())?.f_to_device(o.device)?;
            let loss = net.forward(&x)?.f_cross_entropy_loss::<Tensor>(&t, None, tch::Reduction::Mean, -100, 0.0)?;
            opt.backward_step(&loss);
            loss_sum += loss.f_double_value(&[])?;
            steps += 1;
            bar.inc(chunk.len() as u64, "");
            if crate::progress::interrupted() {
                return Err(Error::Interrupted);
            }
        }
        bar.finish_and_clear();
        if let Some(test) = &test {
            test_top1 = accuracy(test, o.device, &|x| net.forward(x))?;
        }
        let acc = test_top1.map(|a| format!(", held-out top-1 {:.4}", a)).unwrap_or_default();
        eprintln!("teach: epoch {}/{}: train loss {:.4}{acc}", epoch + 1, o.epochs, loss_sum / steps.max(1) as f64);
        if o.anchors.contains(&(epoch + 1)) {
            let p = anchor_path(&o.out, epoch + 1);
            save_atomic(&vs, &p)?;
            anchors.push((p, test_top1));
        }
        save_atomic(&vs, &o.out)?;
    }
    Ok(TeachReport { classes, epochs: o.epochs, test_top1, train_rows: train.len(), anchors })
}
