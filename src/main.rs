//! The `kdcache` command line. Errors: the chain is printed once; exit 2 for bad input, 1 otherwise.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use kdcache::format::{CacheReader, Encoding, LogitDtype, WriterOptions};

#[derive(Parser)]
#[command(name = "kdcache", version, about = "Cache a teacher's ranked logits once; distill students from the cache.",
    long_about = "kdcache runs a teacher once and stores its ranked logits (top-K ids and logits, exact \
log-normalisers and tail masses) in compressed, checksummed shards; students then train from the cache.\n\n\
Exit codes: 0 success, 2 bad input (arguments, files, corrupt caches), 1 internal failure.")]
struct Cli {
    /// Hide progress bars.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
struct BenchArgs {
    /// Results directory.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Class counts of the gradient-fidelity table.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    fidelity_classes: Vec<usize>,
    /// Cached ranks K of the gradient-fidelity table.
    #[arg(long, value_delimiter = ',', default_value = "12,64")]
    fidelity_k: Vec<usize>,
    /// i.i.d. draws averaged for the sampled estimators (rs: at most 256, 32 above 10,000 classes).
    #[arg(long, default_value_t = 1024)]
    draws: usize,
    /// Class counts for the step-time table (a million needs about 8 GB of memory for `full`).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000,1000000")]
    classes: Vec<usize>,
    /// The fixed dis budget (head rows per step) of the step-time table.
    #[arg(long, default_value_t = 2048)]
    fixed_budget: usize,
    /// Fewer repetitions and draws (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Rows for the cache I/O table.
    #[arg(long, default_value_t = 1_000_000)]
    io_rows: usize,
    /// Data directory for the quality table (with cache/train and cache/test inside); skipped if absent.
    #[arg(long, default_value = "data/default")]
    quality_data: PathBuf,
    /// Training steps per estimator for the quality table.
    #[arg(long, default_value_t = 400)]
    quality_steps: usize,
    /// The tables to run.
    #[arg(long, value_delimiter = ',', default_value = "fidelity,speed,io,quality", value_parser = ["fidelity", "speed", "io", "quality"])]
    only: Vec<String>,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
struct TrainArgs {
    /// Cache directory (from `kdcache cache`).
    #[arg(long)]
    cache: PathBuf,
    #[command(flatten)]
    input: DataArgs,
    #[command(flatten)]
    eval: EvalArgs,
    /// A cache of the held-out data, for student–teacher agreement.
    #[arg(long)]
    eval_cache: Option<PathBuf>,
    /// Built-in student backbone: mlp:H[,H…] (features = the last hidden layer).
    #[arg(long, default_value = "mlp:256", conflicts_with = "student_ts")]
    student: String,
    /// A TorchScript backbone (producing features [B, d]) trained through TrainableCModule.
    #[arg(long)]
    student_ts: Option<PathBuf>,
    /// Estimator: full (exact), topk, ghost, rs (tail samples), dis (dynamic importance sampling).
    #[arg(long, value_enum, default_value = "dis")]
    loss: kdcache::train::loss::Estimator,
    /// dis: shared head rows computed per step for every row of the batch (each row's own K ranks and
    /// label are always computed exactly besides). Default: all of the batch's ranked classes U plus
    /// max(|U|/3, 15% of C between 512 and 8,192) classes sampled from the clusters; an N below
    /// 4|U|/3 subsamples the batch's ranked classes too. A step with 60% of C or more is dense (dis = full, or ghost with --dis-tail bucket).
    #[arg(long)]
    candidates: Option<usize>,
    /// dis: how the teacher's exact tail mass enters the target: bucket (one bucket against the
    /// student's tail, as ghost) or spread (evenly over the classes outside the top-K, as full).
    #[arg(long, value_enum, default_value = "spread")]
    dis_tail: kdcache::sample::Tail,
    /// dis: clusters of head rows that stratify the sampled negatives (0 = √C, at most 1,024).
    #[arg(long, default_value_t = 0)]
    dis_clusters: usize,
    /// dis: largest importance weight a sampled row's head update may carry (inf = unclipped).
    #[arg(long, default_value_t = kdcache::sample::DisConfig::default().clip)]
    dis_clip: f64,
    /// Distillation temperature (one of the cache's temperatures).
    #[arg(long, default_value_t = 2.0)]
    temperature: f64,
    /// Weight of the KD term; 1 − alpha weights cross-entropy on the labels.
    #[arg(long, default_value_t = 0.9)]
    alpha: f64,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Backbone learning rate (Adam).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Head optimizer (row-wise): adam (lazy) or sgd (momentum 0.9).
    #[arg(long, value_enum, default_value = "adam")]
    head_opt: kdcache::train::optim::OptKind,
    /// Head learning rate (row-wise). Default 1e-2 for dis, which updates a head row only on the steps
    /// that compute it (measured on the demo: 40.3% top-1 against 29.5% with 1e-3), 1e-3 otherwise.
    #[arg(long)]
    head_lr: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Run directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint (same options; --epochs may grow). With no
    /// checkpoint yet it starts the run, so job scripts can always pass it.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace a run already in --out.
    #[arg(long)]
    overwrite: bool,
    /// Also checkpoint every N steps (0 = only at epoch ends).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
    #[arg(long, default_value_t = 20)]
    log_every: usize,
    /// Stop after N steps in total (0 = all epochs).
    #[arg(long, default_value_t = 0)]
    max_steps: usize,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
struct ExportArgs {
    /// Run directory.
    run: PathBuf,
    /// Output .safetensors.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Cache directory.
    dir: PathBuf,
    /// Training runs whose curves to include.
    #[arg(long = "run")]
    runs: Vec<PathBuf>,
    /// Output directory (report.html, and one .svg and one .png per chart).
    #[arg(long, default_value = "report")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// Run directories (each with summary.json and metrics.jsonl).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Write the combined curves here (SVG).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MergeArgs {
    /// Output cache directory.
    #[arg(long)]
    out: PathBuf,
    /// Replace a cache already in the output directory.
    #[arg(long)]
    overwrite: bool,
    /// The part caches (all N of them, any order).
    #[arg(required = true)]
    parts: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Output directory: {train,test}_x.npy (float32 [N, dim]), {train,test}_y.npy (int64 [N]), synth.json.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// Feature dimension.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Training rows.
    #[arg(long, default_value_t = 100_000)]
    train: usize,
    /// Held-out rows.
    #[arg(long, default_value_t = 10_000)]
    test: usize,
    /// Classes per superclass.
    #[arg(long, default_value_t = 10)]
    group: usize,
    /// Spread of class centres around their superclass centre.
    #[arg(long, default_value_t = 0.5)]
    class_spread: f32,
    /// Instance noise around the class centre.
    #[arg(long, default_value_t = 1.5)]
    noise: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
struct TeachArgs {
    #[command(flatten)]
    input: DataArgs,
    #[command(flatten)]
    eval: EvalArgs,
    /// Hidden layer sizes.
    #[arg(long, value_delimiter = ',', default_value = "512,512")]
    hidden: Vec<i64>,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Output weights (.safetensors).
    #[arg(long)]
    out: PathBuf,
}

#[cfg(feature = "torch")]
#[derive(clap::Args)]
struct CacheArgs {
    /// The teacher: a TorchScript module (.pt), a built-in MLP (.safetensors from `teach`), or `identity`
    /// (the data rows are already logits). It computes in float32 whatever dtype its file stores.
    #[arg(long)]
    teacher: String,
    #[command(flatten)]
    input: DataArgs,
    /// Split of a synth directory.
    #[arg(long, default_value = "train")]
    split: String,
    #[arg(long, default_value_t = 64)]
    top_k: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    temperatures: Vec<f32>,
    /// Classes drawn per row from the teacher's tail (outside the top-K), with counts.
    #[arg(long, default_value_t = 0)]
    tail_samples: usize,
    /// auto, cpu, cuda or cuda:N (cuda fails when no GPU is visible; it never falls back).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Rows per teacher batch [default: the largest power of two whose float32 logits [B, C] fit 32 MiB
    /// on the CPU (16..1,024 rows) or 1 GiB on a GPU (up to 4,096 rows)]. A resume must use the same.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Build slice i of N (0-based) of the rows, for `kdcache merge`.
    #[arg(long, value_parser = parse_part)]
    part: Option<(usize, usize)>,
    /// What to do with rows whose logits are NaN or infinite.
    #[arg(long, value_enum, default_value = "fail")]
    nan: kdcache::teacher::pipeline::NanPolicy,
    /// Seed of the tail samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    out: OutArgs,
}

#[cfg(feature = "torch")]
fn parse_part(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once('/').ok_or("use i/N, e.g. 0/4")?;
    let (i, n) = (a.parse::<usize>().map_err(|e| e.to_string())?, b.parse::<usize>().map_err(|e| e.to_string())?);
    if n == 0 || i >= n { Err(format!("part {s}: need 0 <= i < N")) } else { Ok((i, n)) }
}

#[derive(clap::Args)]
struct ImportArgs {
    /// Dense teacher logits, shape [N, C], float32, float16 or float64 .npy (memory-mapped, streamed).
    #[arg(long)]
    logits: PathBuf,
    /// The inputs the logits were computed from, named as for `cache` (row i of --logits is the
    /// teacher's output for row i): binds the cache to them, so `train --data` refuses other data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Ground-truth labels .npy [N] (any integer type; -1 = unknown).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// How many top classes to keep per row (K <= C).
    #[arg(long, default_value_t = 64)]
    top_k: usize,
    /// Temperatures at which to store log-normalisers and tail masses.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    temperatures: Vec<f32>,
    #[command(flatten)]
    out: OutArgs,
}

/// Inputs, named the same way by teach, cache and train.
#[derive(clap::Args)]
struct DataArgs {
    /// Inputs: a directory written by `synth` ({split}_x.npy, {split}_y.npy), a features .npy [N, ...]
    /// (float32, float16 or float64) with --labels, or a .safetensors with tensors x (and y).
    #[arg(long)]
    data: PathBuf,
    /// Labels .npy [N] for a features .npy (any integer type; -1 = unknown).
    #[arg(long)]
    labels: Option<PathBuf>,
}

/// Held-out inputs, named as --data and --labels.
#[derive(clap::Args)]
struct EvalArgs {
    /// Held-out data, as --data (default: the test split of a synth --data directory).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Labels .npy [N] for --eval-data.
    #[arg(long, requires = "eval_data")]
    eval_labels: Option<PathBuf>,
}

#[derive(clap::Args)]
struct OutArgs {
    /// Cache directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Shard encoding: kds (memory-mapped, fastest) or parquet (readable by pyarrow, polars, DuckDB).
    #[arg(long, default_value = "kds", value_parser = listed::<Encoding>(&["kds", "parquet"]))]
    format: Encoding,
    /// Storage type of the top-K logits (stored as T0·log p: see schemas/FORMAT.md for each one's precision).
    #[arg(long, default_value = "f16", value_parser = listed::<LogitDtype>(&["f16", "bf16", "f32"]))]
    dtype: LogitDtype,
    /// Rows per block (the unit of compression, shuffling and prefetch).
    #[arg(long, default_value_t = 65536)]
    block_rows: usize,
    /// Rows per shard file.
    #[arg(long, default_value_t = 1 << 20)]
    shard_rows: usize,
    /// Replace a different cache already in the output directory.
    #[arg(long)]
    overwrite: bool,
}

impl OutArgs {
    fn writer(&self) -> WriterOptions {
        WriterOptions { encoding: self.format, block_rows: self.block_rows, shard_rows: self.shard_rows, overwrite: self.overwrite }
    }
}

#[derive(clap::Args)]
struct DumpArgs {
    /// Cache directory.
    dir: PathBuf,
    /// Cache rows to print, as a..b (end exclusive) or a single index.
    #[arg(long, default_value = "0..3", value_parser = parse_range)]
    rows: std::ops::Range<u64>,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Ranks shown per row: a number or `all` [default: 10 as text, all with --json].
    #[arg(long, value_parser = parse_ranks)]
    ranks: Option<usize>,
}

fn parse_ranks(s: &str) -> Result<usize, String> {
    if s == "all" { Ok(usize::MAX) } else { s.parse::<usize>().map_err(|_| format!("{s:?}: use a number of ranks or `all`")) }
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Cache directory.
    dir: PathBuf,
}

/// A parser for a format-layer type with a fixed list of names (the format layer knows no clap).
fn listed<T: std::str::FromStr + Clone + Send + Sync + 'static>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names).try_map(move |s| s.parse::<T>().map_err(|_| format!("{s:?} is not one of {names:?}")))
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
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

fn run(cli: Cli) -> anyhow::Result<()> {
    let progress = !cli.quiet;
    match cli.cmd {
        Cmd::Import(a) => {
            let m = kdcache::import::import(&kdcache::import::ImportOptions {
                logits: a.logits,
                labels: a.labels,
                data: a.data,
                k: a.top_k,
                temperatures: a.temperatures,
                dtype: a.out.dtype,
                out: a.out.out.clone(),
                writer: a.out.writer(),
                progress,
            })
            .context("import failed")?;
            eprintln!(
                "wrote {} rows (C = {}, K = {}) in {} shards to {}",
                m.rows, m.classes, m.top_k, m.shards.len(), a.out.out.display()
            );
        }
        Cmd::Dump(a) => {
            let reader = CacheReader::open(&a.dir)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            kdcache::report::dump::dump(&reader, a.rows, a.json, a.ranks, &mut out)?;
        }
        Cmd::Verify(a) => {
            let reader = CacheReader::open(&a.dir)?;
            let bar = kdcache::progress::Progress::new(reader.rows(), "verify", "rows", progress);
            let r = reader.verify(Some(&bar.bar)).with_context(|| format!("{} failed verification", a.dir.display()))?;
            bar.finish_and_clear();
            println!("ok: {} rows in {} shards, {} blocks, {} bytes; all checksums and row invariants hold", r.rows, r.shards, r.blocks, r.bytes);
        }
        Cmd::Merge(a) => {
            let m = kdcache::format::merge::merge(&a.parts, &a.out, a.overwrite)?;
            eprintln!("merged {} parts: {} rows in {} shards at {}", a.parts.len(), m.rows, m.shards.len(), a.out.display());
        }
        Cmd::Synth(a) => {
            let cfg = kdcache::data::synth::SynthConfig {
                classes: a.classes, dim: a.dim, train: a.train, test: a.test, seed: a.seed, group: a.group, class_spread: a.class_spread, noise: a.noise,
            };
            kdcache::data::synth::generate(&cfg, &a.out)?;
            eprintln!("synth: {} train + {} test rows, {} classes, dim {} in {}", a.train, a.test, a.classes, a.dim, a.out.display());
        }
        #[cfg(feature = "torch")]
        Cmd::Teach(a) => {
            let r = kdcache::teacher::teach::teach(&kdcache::teacher::teach::TeachOptions {
                data: a.input.data, labels: a.input.labels, eval_data: a.eval.eval_data, eval_labels: a.eval.eval_labels, hidden: a.hidden, epochs: a.epochs, batch_size: a.batch_size, lr: a.lr, seed: a.seed,
                device: kdcache::nn::parse_device(&a.device)?, out: a.out.clone(), progress,
            })?;
            println!("{}", serde_json::to_string(&r)?);
        }
        #[cfg(feature = "torch")]
        Cmd::Train(a) => {
            let man = kdcache::format::Manifest::load(&kdcache::format::manifest::manifest_path(&a.cache))?;
            let c = man.classes as usize;
            let o = kdcache::train::TrainOptions {
                cache: a.cache, data: a.input.data, labels: a.input.labels, eval_data: a.eval.eval_data, eval_labels: a.eval.eval_labels, eval_cache: a.eval_cache,
                student: a.student_ts.is_none().then_some(a.student), student_ts: a.student_ts, loss: a.loss,
                dis: kdcache::sample::DisConfig {
                    head_rows: match a.candidates {
                        Some(0) => return Err(kdcache::Error::invalid(format!("--candidates 0 must be between 1 and the class count C = {c}")).into()),
                        Some(n) => n,
                        None => 0,
                    },
                    tail: a.dis_tail,
                    clusters: a.dis_clusters,
                    clip: a.dis_clip,
                    ..Default::default()
                },
                temperature: a.temperature, alpha: a.alpha, epochs: a.epochs, batch_size: a.batch_size, lr: a.lr,
                head_opt: a.head_opt, head_lr: a.head_lr.unwrap_or(kdcache::train::default_head_lr(a.loss)), seed: a.seed, device: a.device, out: a.out.clone(),
                checkpoint_every: a.checkpoint_every, log_every: a.log_every, max_steps: a.max_steps, resume: a.resume, overwrite: a.overwrite, progress,
            };
            let s = kdcache::train::train(&o)?;
            let held_out = match (s.top1, s.ece) {
                (Some(t), Some(e)) => format!("held-out top-1 {t:.4}, ECE {e:.4}"),
                _ => "no held-out set".into(),
            };
            eprintln!("train {}: {held_out}, {:.2} ms/step, {:.0} rows/s -> {}", s.loss, s.step_ms_median, s.rows_per_s, a.out.display());
            println!("{}", serde_json::to_string(&s)?);
        }
        #[cfg(feature = "torch")]
        Cmd::Export(a) => {
            kdcache::train::export(&a.run, &a.out)?;
            eprintln!("exported {} to {}", a.run.display(), a.out.display());
        }
        #[cfg(feature = "torch")]
        Cmd::Bench(a) => {
            let q = a.quality_data.clone();
            let r = kdcache::bench::run(&a.out, &kdcache::bench::BenchOptions {
                fidelity_classes: a.fidelity_classes, fidelity_k: a.fidelity_k, draws: if a.quick { a.draws.min(16) } else { a.draws },
                speed_classes: a.classes, fixed_budget: a.fixed_budget, reps: if a.quick { 3 } else { 10 }, io_rows: a.io_rows,
                quality: Some((q.clone(), q.join("cache/train"), q.join("cache/test"))), quality_steps: a.quality_steps, only: a.only,
            })?;
            print!("{}", kdcache::bench::markdown(&r));
            eprintln!("wrote {}/bench.md and bench.json", a.out.display());
        }
        Cmd::Report(a) => {
            let r = kdcache::report::html::report(&a.dir, &a.runs, &a.out)?;
            let n = r.charts.iter().filter(|p| p.extension().is_some_and(|e| e == "svg")).count();
            eprintln!("report of {} rows: {} ({n} charts, each as SVG and PNG beside it)", r.rows_read, r.html.display());
        }
        Cmd::Compare(a) => {
            kdcache::report::compare::compare(&a.runs, a.plot.as_deref(), &mut std::io::stdout().lock())?;
        }
        #[cfg(feature = "torch")]
        Cmd::Cache(a) => {
            let (m, r) = kdcache::teacher::pipeline::run(&kdcache::teacher::pipeline::CacheOptions {
                teacher: a.teacher, data: a.input.data, labels: a.input.labels, split: a.split, out: a.out.out.clone(), k: a.top_k,
                temperatures: a.temperatures, tail_samples: a.tail_samples, dtype: a.out.dtype, writer: a.out.writer(),
                device: kdcache::nn::parse_device(&a.device)?, batch_size: a.batch_size, part: a.part, nan: a.nan, seed: a.seed, progress,
            })?;
            eprintln!(
                "cache: {} rows (C = {}, K = {}) at {}; {:.0} rows/s, {:.1}% of wall time outside the teacher's forward",
                m.rows, m.classes, m.top_k, a.out.out.display(), r.rows_per_s, 100.0 * r.overhead_share
            );
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}

/// libgomp (libtorch's OpenMP) busy-waits by default, which on a small machine starves the writer and
/// decoder threads (measured: 5x slower caching on 2 cores). It reads OMP_WAIT_POLICY when it is loaded,
/// before `main`, so the process re-executes itself once with the variable set.
#[cfg(feature = "torch")]
fn passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_none()
        && let Ok(exe) = std::env::current_exe()
    {
        let _ = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("OMP_WAIT_POLICY", "PASSIVE").exec();
        // exec returns only on failure: carry on with the default policy
    }
}

/// An error chain as one line: each cause once (a library error's message already names its source,
/// which the chain repeats), and a libtorch message without its C++ backtrace.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // libtorch appends "Exception raised from … (most recent call first):" and a frame per line; the
        // TorchScript interpreter puts two tracebacks before the error itself, on the last line
        let text = text.split("\nException raised from").next().unwrap_or("");
        let text = if text.contains("Traceback of TorchScript") {
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let before = text.split("The following operation failed").next().unwrap_or("").trim();
            format!("{before} {last}")
        } else {
            text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
        };
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn main() -> ExitCode {
    #[cfg(feature = "torch")]
    passive_openmp();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) => e.exit(),
        Err(e) => {
            // one line, like every other error: clap's first line, without its usage block
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ");
            eprintln!("error: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    // panics inside the parquet crate on damaged files are caught and reported as errors: keep them quiet
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !kdcache::format::parquet::in_guard() {
            default_hook(info)
        }
    }));
    let _ = ctrlc::set_handler(|| {
        if kdcache::progress::interrupted() {
            std::process::exit(130);
        }
        kdcache::progress::set_interrupted();
        eprintln!("\ninterrupt: finishing the current step (Ctrl-C again to abort now)");
    });
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let lib = e.chain().find_map(|c| c.downcast_ref::<kdcache::Error>());
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().map(|io| io.kind() == std::io::ErrorKind::BrokenPipe).unwrap_or(false)
                    || matches!(c.downcast_ref::<kdcache::Error>(), Some(kdcache::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            // rerunning a build whose output is already complete succeeds (Makefiles, job arrays)
            if let Some(done @ kdcache::Error::Complete { .. }) = lib {
                eprintln!("{done}");
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", one_line(&e));
            match lib {
                Some(l) if !l.is_bad_input() => ExitCode::from(1),
                Some(_) => ExitCode::from(2),
                None => ExitCode::from(1),
            }
        }
    }
}
