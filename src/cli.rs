//! The command line's arguments: every subcommand's options and their parsers. Parsing only; `main.rs`
//! dispatches, and the policies (defaults that depend on a cache, the demo's layout) live with the code
//! that uses them.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use kdcache::format::{Encoding, LogitDtype, WriterOptions};

#[derive(Parser)]
#[command(
    name = "kdcache",
    version,
    about = "Cache a teacher's ranked logits once; distill students from the cache.",
    long_about = "kdcache runs a teacher once and stores its ranked logits (top-K ids and logits, exact \
log-normalisers and tail masses) in compressed, checksummed shards; students then train from the cache.\n\n\
Exit codes: 0 success, 2 bad input (arguments, files, corrupt caches), 1 internal failure."
)]
pub struct Cli {
    /// Hide progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Build a cache from dense teacher logits [N, C] (.npy, float32 or float16) computed elsewhere.
    Import(ImportArgs),
    /// Print the manifest in brief and cache rows: rank, class, logit, teacher probability per T, tail mass.
    Dump(DumpArgs),
    /// Check every checksum, count and row invariant of a cache; exit 0 only when all hold.
    Verify(VerifyArgs),
    /// Join the caches built with `cache --part i/N` into one cache.
    Merge(MergeArgs),
    /// Generate a deterministic many-class dataset (classes grouped into superclasses).
    Synth(SynthArgs),
    /// Train the built-in MLP teacher with full softmax cross-entropy; saves safetensors.
    #[cfg(feature = "torch")]
    Teach(TeachArgs),
    /// Run a teacher once over a dataset and write its ranked logits into a cache.
    #[cfg(feature = "torch")]
    Cache(CacheArgs),
    /// Train a student from a cache with a chosen estimator (dis: dynamic importance sampling).
    #[cfg(feature = "torch")]
    Train(Box<TrainArgs>),
    /// Write one batch's losses and gradients per estimator over a few steps (a test fixture).
    #[cfg(feature = "torch")]
    #[command(hide = true)]
    Step(StepArgs),
    /// Write a run's student as safetensors for Python (backbone.*, head.weight [C, d], head.bias [C]).
    #[cfg(feature = "torch")]
    Export(ExportArgs),
    /// Print a table of runs' summaries and plot their curves together.
    Compare(CompareArgs),
    /// An HTML page (self-contained) and SVG + PNG charts about a cache, and training runs' curves.
    Report(ReportArgs),
    /// Measure gradient fidelity and step time vs class count; writes bench.md and bench.json.
    #[cfg(feature = "torch")]
    Bench(BenchArgs),
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Results directory.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Class counts of the gradient-fidelity table.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    pub fidelity_classes: Vec<usize>,
    /// Cached ranks K of the gradient-fidelity table.
    #[arg(long, value_delimiter = ',', default_value = "12,64")]
    pub fidelity_k: Vec<usize>,
    /// i.i.d. draws averaged for the sampled estimators (rs: at most 256, 32 above 10,000 classes).
    #[arg(long, default_value_t = 1024)]
    pub draws: usize,
    /// Class counts for the step-time table (a million needs about 8 GB of memory for `full`).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000,1000000")]
    pub classes: Vec<usize>,
    /// The fixed dis budget (head rows per step) of the step-time table.
    #[arg(long, default_value_t = 2048)]
    pub fixed_budget: usize,
    /// Fewer repetitions and draws (a smoke run).
    #[arg(long)]
    pub quick: bool,
    /// Rows for the cache I/O table.
    #[arg(long, default_value_t = 1_000_000)]
    pub io_rows: usize,
    /// Data directory for the quality table (with cache/train and cache/test inside); skipped if absent.
    #[arg(long, default_value = "data/default")]
    pub quality_data: PathBuf,
    /// Training steps per estimator for the quality table.
    #[arg(long, default_value_t = 400)]
    pub quality_steps: usize,
    /// Class count of the dis-proposals table.
    #[arg(long, default_value_t = 100_000)]
    pub proposal_classes: usize,
    /// Cached ranks K of the dis-proposals table.
    #[arg(long, default_value_t = 12)]
    pub proposal_k: usize,
    /// Training examples of the views table's image world (3×12×12, 20 classes).
    #[arg(long, default_value_t = 40_000)]
    pub views_train: usize,
    /// Epochs of the views table's students; its online reference caches as many views.
    #[arg(long, default_value_t = 32)]
    pub views_epochs: usize,
    /// The tables to run.
    #[arg(long, value_delimiter = ',', default_value = "fidelity,speed,io,quality,proposals,views,ensemble", value_parser = ["fidelity", "speed", "io", "quality", "proposals", "views", "ensemble"])]
    pub only: Vec<String>,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Cache directory (from `kdcache cache`). A comma-separated list trains along a route of anchors
    /// (route-constrained optimisation): caches of the teacher's checkpoints on the same data, easiest
    /// first, the final teacher last; each trains for its --anchor-epochs, the last for the rest.
    #[arg(long, value_delimiter = ',', required = true)]
    pub cache: Vec<PathBuf>,
    /// Epochs on each route anchor, in order (one value per cache before the last; default: an equal
    /// share of --epochs each, the final cache taking the rest).
    #[arg(long, value_delimiter = ',')]
    pub anchor_epochs: Vec<usize>,
    #[command(flatten)]
    pub input: DataArgs,
    #[command(flatten)]
    pub eval: EvalArgs,
    /// A cache of the held-out data, for student–teacher agreement.
    #[arg(long)]
    pub eval_cache: Option<PathBuf>,
    /// Built-in student backbone: mlp:H[,H…] (features = the last hidden layer).
    #[arg(long, default_value = "mlp:256", conflicts_with = "student_ts")]
    pub student: String,
    /// A TorchScript backbone (producing features [B, d]) trained through TrainableCModule.
    #[arg(long)]
    pub student_ts: Option<PathBuf>,
    /// Estimator: full (exact), topk, ghost, rs (tail samples), dis (dynamic importance sampling).
    #[arg(long, value_enum, default_value = "dis")]
    pub loss: kdcache::train::loss::Estimator,
    #[command(flatten)]
    pub dis: DisArgs,
    /// Distillation temperature (one of the cache's temperatures).
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f64,
    /// Weight of the KD term; 1 − alpha weights cross-entropy on the labels.
    #[arg(long, default_value_t = 0.9)]
    pub alpha: f64,
    #[command(flatten)]
    pub run: RunArgs,
    /// Head optimizer (row-wise): adam (lazy) or sgd (momentum 0.9).
    #[arg(long, value_enum, default_value = "adam")]
    pub head_opt: kdcache::train::optim::OptKind,
    /// Head learning rate (row-wise). Default 5e-3 for dis, which updates a head row only on the steps
    /// that compute it, 3e-3 for full (each the best measured on the demo and the power-law
    /// worlds), 1e-3 otherwise.
    #[arg(long)]
    pub head_lr: Option<f64>,
    /// Run directory (locked while the run trains: a second train on it is refused).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out from its last checkpoint (same options; --epochs may grow). With no
    /// checkpoint yet it starts the run, so job scripts can always pass it.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace a run already in --out.
    #[arg(long)]
    pub overwrite: bool,
    /// Also checkpoint every N steps (0 = only at epoch ends).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 20)]
    pub log_every: usize,
    /// Stop after N steps in total (0 = all epochs).
    #[arg(long, default_value_t = 0)]
    pub max_steps: usize,
    /// Also evaluate on the held-out set every N steps (0 = only at epoch ends): finer curves of
    /// top-1 against steps and training time, for `compare`'s time to accuracy.
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Also evaluate retrieval on the held-out rows from the student's features (rank-1 and mAP, as
    /// Market-1501: each class's first held-out row queries the others; also over the classes with no
    /// training row).
    #[arg(long)]
    pub retrieval: bool,
}

/// The `dis` sampler's options, shared by `train` and `step`.
#[cfg(feature = "torch")]
#[derive(clap::Args)]
pub struct DisArgs {
    /// dis: shared head rows computed per step for every row of the batch (each row's own K ranks and
    /// label are always computed exactly besides). Default: all of the batch's ranked classes U plus
    /// max(|U|/3, 15% of C between 512 and 8,192) classes sampled from the clusters; an N below
    /// 4|U|/3 subsamples the batch's ranked classes too. A step with 60% of C or more is dense (dis = full, or ghost with --dis-tail bucket).
    #[arg(long)]
    pub candidates: Option<usize>,
    /// dis: how the teacher's exact tail mass enters the target: bucket (one bucket against the
    /// student's tail, as ghost) or spread (evenly over the classes outside the top-K, as full).
    #[arg(long, value_enum, default_value = "spread")]
    pub dis_tail: kdcache::sample::Tail,
    /// dis: clusters of head rows that stratify the sampled negatives, with --dis-proposal clusters or
    /// neyman (0 = √C, at most 1,024).
    #[arg(long, default_value_t = 0)]
    pub dis_clusters: usize,
    /// dis: largest importance weight a sampled row's head update may carry (inf = unclipped).
    #[arg(long, default_value_t = kdcache::sample::DisConfig::default().clip)]
    pub dis_clip: f64,
    /// dis: where the negatives outside the batch's ranked classes are drawn from: uniform (every
    /// class alike; measured as good as the others or better, and the fastest), prior (the teacher's class prior in the manifest, tempered), clusters (online
    /// clusters of head rows, weighted by the student's current softmax mass), neyman (those clusters,
    /// weighted for the least variance of each row's normaliser).
    #[arg(long, value_enum, default_value = "uniform")]
    pub dis_proposal: kdcache::sample::Proposal,
}

#[cfg(feature = "torch")]
impl DisArgs {
    /// The sampler's settings (the rest at their defaults).
    pub fn config(&self) -> Result<kdcache::sample::DisConfig, kdcache::Error> {
        let head_rows = match self.candidates {
            Some(0) => return Err(kdcache::Error::invalid("--candidates 0: must be between 1 and the class count")),
            Some(n) => n,
            None => 0,
        };
        Ok(kdcache::sample::DisConfig {
            head_rows,
            tail: self.dis_tail,
            clusters: self.dis_clusters,
            clip: self.dis_clip,
            proposal: self.dis_proposal,
            ..Default::default()
        })
    }
}

/// `kdcache step` (hidden): a fixture of what `train`'s step computes on one batch, for testing a
/// re-implementation of the estimators.
#[cfg(feature = "torch")]
#[derive(clap::Args)]
pub struct StepArgs {
    /// Cache directory.
    #[arg(long)]
    pub cache: PathBuf,
    /// Estimator.
    #[arg(long, value_enum, default_value = "dis")]
    pub loss: kdcache::train::loss::Estimator,
    #[command(flatten)]
    pub dis: DisArgs,
    /// dis: a step is dense (full or ghost) when its shared columns reach this share of C (above 1:
    /// never, so --candidates C computes every class through the sampled path).
    #[arg(long, default_value_t = kdcache::sample::DisConfig::default().dense_above)]
    pub dis_dense_above: f64,
    /// Batch: the cache's rows 0..N in stored order (as `dump` numbers them).
    #[arg(long)]
    pub rows: usize,
    /// Feature size of the random features h [N, D].
    #[arg(long)]
    pub dim: usize,
    /// Optimisation steps on the batch.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Seed of the features, the head and the sampler (as train's --seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Distillation temperature [default: the cache's first].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Weight of the KD term; 1 − alpha weights cross-entropy on the labels.
    #[arg(long, default_value_t = 0.9)]
    pub alpha: f64,
    /// Head learning rate (row-wise Adam) [default: train's].
    #[arg(long)]
    pub head_lr: Option<f64>,
    /// Output .safetensors.
    #[arg(long)]
    pub out: PathBuf,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Run directory.
    pub run: PathBuf,
    /// Output .safetensors (its folder is created). A TorchScript student's trained module, with its
    /// buffers (BatchNorm statistics), is written beside it as X.backbone.pt.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Cache directory.
    pub dir: PathBuf,
    /// Training runs whose curves to include.
    #[arg(long = "run")]
    pub runs: Vec<PathBuf>,
    /// Output directory (report.html, and one .svg and one .png per chart).
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Run directories (each with summary.json and metrics.jsonl).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Write the combined curves here (SVG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The time-to-accuracy target: the best held-out top-1 of this run (one of the runs, e.g. the
    /// `full` baseline). Default: the run whose best top-1 is lowest.
    #[arg(long)]
    pub target: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct MergeArgs {
    /// Output cache directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a cache already in the output directory.
    #[arg(long)]
    pub overwrite: bool,
    /// The part caches (all N of them, any order).
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Output directory: {train,test}_x.npy (float32 [N, dim]), {train,test}_y.npy (int64 [N]), synth.json.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    /// Feature dimension.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Training rows.
    #[arg(long, default_value_t = 100_000)]
    pub train: usize,
    /// Held-out rows.
    #[arg(long, default_value_t = 10_000)]
    pub test: usize,
    /// Classes per superclass.
    #[arg(long, default_value_t = 10)]
    pub group: usize,
    /// Spread of class centres around their superclass centre.
    #[arg(long, default_value_t = 0.5)]
    pub class_spread: f32,
    /// Instance noise around the class centre.
    #[arg(long, default_value_t = 1.5)]
    pub noise: f32,
    /// Class frequencies by a power law: the r-th most frequent class ∝ r^−S (0 = all equal; ~1.1 is
    /// word- or product-like: a few classes with thousands of rows, most with a handful).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// A second, coarser scale of the class hierarchy: groups of N classes (N a multiple of --group;
    /// about √C is natural) whose superclass centres lie around a common coarse centre (0 = none: the
    /// superclass centres are independent).
    #[arg(long, default_value_t = 0)]
    pub coarse: usize,
    /// Spread of superclass centres around their coarse centre (with --coarse).
    #[arg(long, default_value_t = 0.7)]
    pub coarse_spread: f32,
    /// The image world: rows are float32 images C×H×W (e.g. 3x16x16) of N(0, noise²) pixels holding
    /// their class's template (a patch of C × --patch × --patch, mirrored half the time) at a random
    /// place, so crops change what a teacher sees; oracle.safetensors is then the template-matching
    /// Bayes-optimal teacher. --dim is ignored.
    #[arg(long, value_parser = kdcache::data::synth::parse_image)]
    pub image: Option<[usize; 3]>,
    /// The side of a class's template in the image world [default: a quarter of the image's smaller side, at least 2].
    #[arg(long)]
    pub patch: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
pub struct TeachArgs {
    #[command(flatten)]
    pub input: DataArgs,
    #[command(flatten)]
    pub eval: EvalArgs,
    /// Hidden layer sizes.
    #[arg(long, value_delimiter = ',', default_value = "512,512")]
    pub hidden: Vec<i64>,
    /// Classes of the teacher's output (the vocabulary or label-map size), so that classes absent from
    /// the training labels still get a logit; every label must be below it. Default: the largest
    /// training label + 1.
    #[arg(long)]
    pub classes: Option<usize>,
    #[command(flatten)]
    pub run: RunArgs,
    /// Output weights (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Also keep the teacher as it was after these epochs, as OUT's name with `.e<E>` before the
    /// extension (teacher.e1.safetensors, …): anchors along its training route, for `train --cache
    /// a1,…,final` (route-constrained optimisation).
    #[arg(long, value_delimiter = ',')]
    pub anchors: Vec<usize>,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
pub struct CacheArgs {
    /// The teacher: a TorchScript module (.pt), a built-in MLP (.safetensors from `teach`), or `identity`
    /// (the data rows are already logits). It computes in float32 whatever dtype its file stores. Given
    /// two or more times, an ensemble: the cache holds the weighted mixture of the teachers' tempered
    /// distributions at each temperature, Σ_i w_i·softmax(z_i/T) (not the softmax of mean logits; see
    /// schemas/FORMAT.md, Ensembles), and the manifest each teacher's agreement with the labels and with
    /// the mixture. The teachers must give the same class count.
    #[arg(long, required = true, action = clap::ArgAction::Append)]
    pub teacher: Vec<String>,
    /// An ensemble's weights, one per --teacher in order, comma-separated (normalised to sum 1)
    /// [default: equal].
    #[arg(long, value_delimiter = ',')]
    pub teacher_weights: Vec<f64>,
    #[command(flatten)]
    pub input: DataArgs,
    /// Split of a synth directory.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Ranked classes kept per row (at most C: above it, every class is kept).
    #[arg(long, default_value_t = 64)]
    pub top_k: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub temperatures: Vec<f32>,
    /// Classes drawn per row from the teacher's tail (outside the top-K), with counts.
    #[arg(long, default_value_t = 0)]
    pub tail_samples: usize,
    /// auto, cpu, cuda or cuda:N (cuda fails when no GPU is visible; it never falls back).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Rows per teacher batch [default: the largest power of two whose float32 logits [B, C] fit 32 MiB
    /// on the CPU (16..1,024 rows) or 1 GiB on a GPU (up to 4,096 rows)]. A resume must use the same.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Build slice i of N (0-based) of the rows, for `kdcache merge`.
    #[arg(long, value_parser = parse_part)]
    pub part: Option<(usize, usize)>,
    /// What to do with rows whose logits are NaN or infinite.
    #[arg(long, value_enum, default_value = "fail")]
    pub nan: kdcache::teacher::pipeline::NanPolicy,
    /// Seed of the tail samples and of the views' parameters.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Augmented views to cache per example (image rows [C, H, W] or [H, W] only): each view is a random
    /// resized crop, back to H × W, and a random horizontal flip, drawn from --augment and the seed;
    /// the teacher sees the view, and the row keeps `view` and its parameters `aug`
    /// ([top, left, height, width, flip]), which `train` replays on the student's input [default: 0,
    /// the examples as they are].
    #[arg(long, default_value_t = 0)]
    pub views: u32,
    /// The views' distribution: scale=LO:HI (the crop's share of the area), ratio=LO:HI (its
    /// width / height, log-uniform), flip=P (the probability of a horizontal flip), comma-separated,
    /// any subset; a key left out takes torchvision's default (scale=0.08:1, ratio=0.75:1.3333,
    /// flip=0.5), as does `default`. Needs --views.
    #[arg(long)]
    pub augment: Option<String>,
    #[command(flatten)]
    pub out: OutArgs,
}

#[cfg(feature = "torch")]
pub fn parse_part(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once('/').ok_or("use i/N, e.g. 0/4")?;
    let (i, n) = (a.parse::<usize>().map_err(|e| e.to_string())?, b.parse::<usize>().map_err(|e| e.to_string())?);
    if n == 0 || i >= n { Err(format!("part {s}: need 0 <= i < N")) } else { Ok((i, n)) }
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Dense teacher logits, shape [N, C], float32, float16 or float64 .npy (memory-mapped, streamed).
    #[arg(long)]
    pub logits: PathBuf,
    /// The inputs the logits were computed from, named as for `cache` (row i of --logits is the
    /// teacher's output for row i): binds the cache to them, so `train --data` refuses other data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Ground-truth labels .npy [N] (any integer type; -1 = unknown).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// How many top classes to keep per row (at most C: above it, every class is kept).
    #[arg(long, default_value_t = 64)]
    pub top_k: usize,
    /// Temperatures at which to store log-normalisers and tail masses.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub temperatures: Vec<f32>,
    #[command(flatten)]
    pub out: OutArgs,
}

/// The options of a training loop, shared by `teach` and `train`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Passes over the data (`train --resume` may raise it).
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Rows per step.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Learning rate of Adam (for `train`, the backbone's; the head has --head-lr).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of every random choice (initialisation, order, sampling): the same seed, the same run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N (cuda fails when no GPU is visible; it never falls back).
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Inputs, named the same way by teach, cache and train.
#[derive(clap::Args)]
pub struct DataArgs {
    /// Inputs: a directory written by `synth` ({split}_x.npy, {split}_y.npy), a features .npy [N, ...]
    /// (float32, float16, float64, or integers such as uint8 images, read as float32 values) with
    /// --labels, or a .safetensors with tensors x (and y).
    #[arg(long)]
    pub data: PathBuf,
    /// Labels .npy [N] for a features .npy (any integer type; -1 = unknown).
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

/// Held-out inputs, named as --data and --labels.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// Held-out data, as --data (default: the test split of a synth --data directory).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Labels .npy [N] for --eval-data. `train` refuses a label outside the cache's classes before
    /// its first step (mark labels the student cannot have -1: not evaluated).
    #[arg(long, requires = "eval_data")]
    pub eval_labels: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct OutArgs {
    /// Cache directory to write (locked while it is written: a second writer is refused).
    #[arg(long)]
    pub out: PathBuf,
    /// Shard encoding: kds (memory-mapped, fastest) or parquet (readable by pyarrow, polars, DuckDB).
    #[arg(long, default_value = "kds", value_parser = listed::<Encoding>(&["kds", "parquet"]))]
    pub format: Encoding,
    /// Storage type of the top-K logits (stored as T0·log p: see schemas/FORMAT.md for each one's precision).
    #[arg(long, default_value = "f16", value_parser = listed::<LogitDtype>(&["f16", "bf16", "f32"]))]
    pub dtype: LogitDtype,
    /// Rows per block (the unit of compression, shuffling and prefetch).
    #[arg(long, default_value_t = 65536)]
    pub block_rows: usize,
    /// Rows per shard file.
    #[arg(long, default_value_t = 1 << 20)]
    pub shard_rows: usize,
    /// Replace a different cache already in the output directory.
    #[arg(long)]
    pub overwrite: bool,
}

impl OutArgs {
    pub fn writer(&self) -> WriterOptions {
        WriterOptions { encoding: self.format, block_rows: self.block_rows, shard_rows: self.shard_rows, overwrite: self.overwrite }
    }
}

#[derive(clap::Args)]
pub struct DumpArgs {
    /// Cache directory.
    pub dir: PathBuf,
    /// Cache rows to print, as a..b (end exclusive) or a single index.
    #[arg(long, default_value = "0..3", value_parser = parse_range)]
    pub rows: std::ops::Range<u64>,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Ranks shown per row: a number or `all` [default: 10 as text, all with --json].
    #[arg(long, value_parser = parse_ranks)]
    pub ranks: Option<usize>,
}

pub fn parse_ranks(s: &str) -> Result<usize, String> {
    if s == "all" { Ok(usize::MAX) } else { s.parse::<usize>().map_err(|_| format!("{s:?}: use a number of ranks or `all`")) }
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Cache directory.
    pub dir: PathBuf,
}

/// A parser for a format-layer type with a fixed list of names (the format layer knows no clap).
pub fn listed<T: std::str::FromStr + Clone + Send + Sync + 'static>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names).try_map(move |s| s.parse::<T>().map_err(|_| format!("{s:?} is not one of {names:?}")))
}

pub fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let num = |x: &str| x.trim().parse::<u64>().map_err(|_| format!("{x:?} is not a row index"));
    match s.split_once("..") {
        Some((a, b)) => {
            let a = if a.is_empty() { 0 } else { num(a)? };
            let b = if b.is_empty() { u64::MAX } else { num(b)? };
            if a > b { Err(format!("range {s} is backwards")) } else { Ok(a..b) }
        }
        None => num(s).map(|a| a..a + 1),
    }
}
