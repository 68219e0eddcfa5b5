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
}

#[derive(clap::Args)]
struct ImportArgs {
    /// Dense teacher logits, shape [N, C], float32 or float16 .npy (memory-mapped, streamed).
    #[arg(long)]
    logits: PathBuf,
    /// Ground-truth labels, shape [N], int64 or int32 .npy (-1 = unknown).
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

#[derive(clap::Args)]
struct OutArgs {
    /// Cache directory to write.
    #[arg(long)]
    out: PathBuf,
    /// Shard encoding: kds (memory-mapped, fastest) or parquet (readable by pyarrow, polars, DuckDB).
    #[arg(long, value_enum, default_value_t = Encoding::Kds)]
    format: Encoding,
    /// Storage type of the top-K logits.
    #[arg(long, value_enum, default_value_t = LogitDtype::F16)]
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
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Cache directory.
    dir: PathBuf,
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
            kdcache::report::dump::dump(&reader, a.rows, a.json, &mut out)?;
        }
        Cmd::Verify(a) => {
            let reader = CacheReader::open(&a.dir)?;
            let bar = kdcache::progress::bar(reader.rows(), "verify", progress);
            let r = reader.verify(Some(&bar)).with_context(|| format!("{} failed verification", a.dir.display()))?;
            bar.finish_and_clear();
            println!("ok: {} rows in {} shards, {} blocks, {} bytes; all checksums and row invariants hold", r.rows, r.shards, r.blocks, r.bytes);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
            eprintln!("error: {e:#}");
            match lib {
                Some(l) if !l.is_bad_input() => ExitCode::from(1),
                Some(_) => ExitCode::from(2),
                None => ExitCode::from(1),
            }
        }
    }
}
