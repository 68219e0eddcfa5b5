//! The `kdcache` binary: parses (`cli.rs`) and dispatches to the library. Errors: the chain is printed once,
//! on one line; exit 2 for bad input, 1 otherwise.
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use kdcache::format::CacheReader;

mod cli;
use cli::{Cli, Cmd};

fn dispatch(cli: Cli) -> anyhow::Result<()> {
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
            eprintln!("wrote {} rows (C = {}, K = {}) in {} shards to {}", m.rows, m.classes, m.top_k, m.shards.len(), a.out.out.display());
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
            std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create the directory", a.out.display()))?;
            let _lock = kdcache::fsio::DirLock::acquire(&a.out, "merge")?;
            let m = kdcache::format::merge::merge(&a.parts, &a.out, a.overwrite)?;
            eprintln!("merged {} parts: {} rows in {} shards at {}", a.parts.len(), m.rows, m.shards.len(), a.out.display());
        }
        Cmd::Synth(a) => {
            if a.patch.is_some() && a.image.is_none() {
                return Err(kdcache::Error::invalid("--patch needs --image C×H×W").into());
            }
            let patch = a.image.map_or(0, |[_, h, w]| a.patch.unwrap_or((h.min(w) / 4).max(2)));
            let cfg = kdcache::data::synth::SynthConfig {
                classes: a.classes,
                dim: a.image.map_or(a.dim, |[c, ..]| c * patch * patch),
                train: a.train,
                test: a.test,
                seed: a.seed,
                group: a.group,
                class_spread: a.class_spread,
                noise: a.noise,
                zipf: a.zipf,
                coarse: a.coarse,
                coarse_spread: a.coarse_spread,
                image: a.image,
                patch,
            };
            kdcache::data::synth::generate(&cfg, &a.out)?;
            let shape = a.image.map_or(format!("dim {}", a.dim), |[c, h, w]| format!("images {c}×{h}×{w}, templates {patch}×{patch}"));
            eprintln!("synth: {} train + {} test rows, {} classes, {shape} in {}", a.train, a.test, a.classes, a.out.display());
        }
        #[cfg(feature = "torch")]
        Cmd::Teach(a) => {
            let r = kdcache::teacher::teach::teach(&kdcache::teacher::teach::TeachOptions {
                data: a.input.data,
                labels: a.input.labels,
                eval_data: a.eval.eval_data,
                eval_labels: a.eval.eval_labels,
                hidden: a.hidden,
                classes: a.classes,
                epochs: a.run.epochs,
                batch_size: a.run.batch_size,
                lr: a.run.lr,
                seed: a.run.seed,
                device: kdcache::nn::parse_device(&a.run.device)?,
                out: a.out.clone(),
                anchors: a.anchors,
                progress,
            })?;
            println!("{}", serde_json::to_string(&r)?);
        }
        #[cfg(feature = "torch")]
        Cmd::Train(a) => {
            let mut caches = a.cache;
            let cache = caches.pop().ok_or_else(|| kdcache::Error::invalid("--cache needs a cache directory"))?;
            let o = kdcache::train::TrainOptions {
                cache,
                anchors: caches,
                anchor_epochs: a.anchor_epochs,
                data: a.input.data,
                labels: a.input.labels,
                eval_data: a.eval.eval_data,
                eval_labels: a.eval.eval_labels,
                eval_cache: a.eval_cache,
                student: a.student_ts.is_none().then_some(a.student),
                student_ts: a.student_ts,
                loss: a.loss,
                dis: a.dis.config()?,
                temperature: a.temperature,
                alpha: a.alpha,
                epochs: a.run.epochs,
                batch_size: a.run.batch_size,
                lr: a.run.lr,
                head_opt: a.head_opt,
                head_lr: a.head_lr.unwrap_or(kdcache::train::default_head_lr(a.loss)),
                seed: a.run.seed,
                device: a.run.device,
                out: a.out.clone(),
                checkpoint_every: a.checkpoint_every,
                log_every: a.log_every,
                max_steps: a.max_steps,
                eval_every: a.eval_every,
                retrieval: a.retrieval,
                resume: a.resume,
                overwrite: a.overwrite,
                progress,
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
        Cmd::Step(a) => {
            let o = kdcache::train::fixture::StepOptions {
                cache: a.cache,
                loss: a.loss,
                dis: kdcache::sample::DisConfig { dense_above: a.dis_dense_above, ..a.dis.config()? },
                rows: a.rows,
                dim: a.dim,
                steps: a.steps,
                seed: a.seed,
                temperature: a.temperature,
                alpha: a.alpha,
                head_lr: a.head_lr,
                out: a.out.clone(),
            };
            let n = kdcache::train::fixture::write_fixture(&o)?;
            eprintln!("step: {n} tensors of {} steps of {} to {}", o.steps, o.loss.name(), a.out.display());
        }
        #[cfg(feature = "torch")]
        Cmd::Export(a) => {
            let module = kdcache::train::export(&a.run, &a.out)?;
            let module = module.map(|m| format!(" (the TorchScript backbone, with its buffers, to {})", m.display())).unwrap_or_default();
            eprintln!("exported {} to {}{module}", a.run.display(), a.out.display());
        }
        #[cfg(feature = "torch")]
        Cmd::Bench(a) => {
            let q = a.quality_data.clone();
            let r = kdcache::bench::run_tables(
                &a.out,
                &kdcache::bench::BenchOptions {
                    fidelity_classes: a.fidelity_classes,
                    fidelity_k: a.fidelity_k,
                    draws: if a.quick { a.draws.min(16) } else { a.draws },
                    speed_classes: a.classes,
                    fixed_budget: a.fixed_budget,
                    reps: if a.quick { 3 } else { 10 },
                    io_rows: a.io_rows,
                    quality: Some((q.clone(), q.join("cache/train"), q.join("cache/test"))),
                    quality_steps: a.quality_steps,
                    proposal_classes: a.proposal_classes,
                    proposal_k: a.proposal_k,
                    views: kdcache::bench::ViewsOptions {
                        train: if a.quick { a.views_train.min(4000) } else { a.views_train },
                        epochs: if a.quick { a.views_epochs.min(4) } else { a.views_epochs },
                        views: if a.quick { vec![1, 4] } else { vec![1, 4, 16] },
                        ..Default::default()
                    },
                    ensemble: if a.quick {
                        kdcache::bench::EnsembleOptions { classes: 100, train: 4000, teacher_epochs: 2, student_epochs: 1, ..Default::default() }
                    } else {
                        Default::default()
                    },
                    only: a.only,
                },
            )?;
            print!("{}", kdcache::bench::markdown(&r));
            eprintln!("wrote {}/bench.md and bench.json", a.out.display());
        }
        Cmd::Report(a) => {
            let r = kdcache::report::html::report(&a.dir, &a.runs, &a.out)?;
            let n = r.charts.iter().filter(|p| p.extension().is_some_and(|e| e == "svg")).count();
            eprintln!("report of {} rows: {} ({n} charts, each as SVG and PNG beside it)", r.rows_read, r.html.display());
        }
        Cmd::Compare(a) => {
            kdcache::report::compare::compare(&a.runs, a.plot.as_deref(), a.target.as_deref(), &mut std::io::stdout().lock())?;
        }
        #[cfg(feature = "torch")]
        Cmd::Cache(a) => {
            let (m, r) = kdcache::teacher::pipeline::build_cache(&kdcache::teacher::pipeline::CacheOptions {
                teachers: a.teacher,
                teacher_weights: a.teacher_weights,
                data: a.input.data,
                labels: a.input.labels,
                split: a.split,
                out: a.out.out.clone(),
                k: a.top_k,
                temperatures: a.temperatures,
                tail_samples: a.tail_samples,
                dtype: a.out.dtype,
                writer: a.out.writer(),
                device: kdcache::nn::parse_device(&a.device)?,
                batch_size: a.batch_size,
                part: a.part,
                nan: a.nan,
                seed: a.seed,
                views: a.views,
                augment: a.augment.as_deref().map(kdcache::data::augment::AugmentSpec::parse).transpose()?,
                progress,
            })?;
            eprintln!(
                "cache: {} rows (C = {}, K = {}) at {}; {:.0} rows/s, {:.1}% of wall time outside the teacher's forward",
                m.rows,
                m.classes,
                m.top_k,
                a.out.out.display(),
                r.rows_per_s,
                100.0 * r.overhead_share
            );
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}

/// Two libtorch settings that are read once, from the environment, when the library starts, so the
/// process re-executes itself once with them set (a value the user set is kept):
/// - OMP_WAIT_POLICY=PASSIVE: libgomp (libtorch's OpenMP) busy-waits by default, which on a small
///   machine starves the writer and decoder threads (measured: 5x slower caching on 2 cores). libgomp
///   reads it when it is loaded, before `main`.
/// - THP_MEM_ALLOC_ENABLE=1: tensors of 2 MiB and more on transparent huge pages where the kernel offers
///   them (`madvise` mode). A sparse step touches thousands of scattered head rows in three tables
///   (weights and two moments); with 4 KiB pages each row costs TLB misses (measured at C = 100,000,
///   K = 64: 2.0M → 56k page faults over the step-time table; the step times moved within the noise of
///   the shared machine they were measured on).
#[cfg(feature = "torch")]
fn libtorch_environment() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_none()
        && let Ok(exe) = std::env::current_exe()
    {
        let mut cmd = std::process::Command::new(exe);
        cmd.args(std::env::args_os().skip(1)).env("OMP_WAIT_POLICY", "PASSIVE");
        if std::env::var_os("THP_MEM_ALLOC_ENABLE").is_none() {
            cmd.env("THP_MEM_ALLOC_ENABLE", "1");
        }
        let _ = cmd.exec();
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
    kdcache::format::reader::keep_freed_memory();
    #[cfg(feature = "torch")]
    libtorch_environment();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            // one line, like every other error: clap's first line, without its usage block
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ");
            eprintln!("error: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    kdcache::format::parquet::quiet_guarded_panics();
    let _ = ctrlc::set_handler(|| {
        if kdcache::progress::interrupted() {
            std::process::exit(130);
        }
        kdcache::progress::set_interrupted();
        eprintln!("\ninterrupt: finishing the current step (Ctrl-C again to abort now)");
    });
    match dispatch(cli) {
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
