//! Builds a cache directory: rows in, shards out (temp name, fsync, rename), a partial manifest after
//! every shard so a crashed build resumes, and `_manifest.json` published last.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::format::manifest::{Encoding, EnsembleMember, MANIFEST, Manifest, PARTIAL, ShardInfo, Signature, Stats, xxh3_hex};
use crate::format::rows::{RowBatch, RowSpec};
use crate::format::{kds, parquet};
use crate::fsio::{file_xxh3, tmp_path, write_atomic};

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub encoding: Encoding,
    /// Rows per block (kds block / Parquet row group): the unit of shuffling and prefetch.
    pub block_rows: usize,
    /// Rows per shard file.
    pub shard_rows: usize,
    /// Replace a different cache already in the directory.
    pub overwrite: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { encoding: Encoding::Kds, block_rows: 1 << 16, shard_rows: 1 << 20, overwrite: false }
    }
}

/// Running sums behind [`Stats`], persisted with the partial manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Accum {
    prior_sum: Vec<f64>,
    rows: u64,
    labeled: u64,
    agree: u64,
    mass_sum: f64,
    /// One past the largest example index (`row`) written.
    #[serde(default)]
    next_example: Option<u64>,
    /// One past the largest example index of a batch whose prior `prior_sum` holds (a batch's prior is
    /// one sum, counted with the shard where the batch starts, even when its rows run into the next).
    #[serde(default)]
    prior_end: Option<u64>,
    /// Per ensemble member: labelled rows whose argmax (the member's) is the label, rows where it is the
    /// mixture's.
    #[serde(default)]
    members: Vec<[u64; 2]>,
}

impl Accum {
    fn add_rows(&mut self, b: &RowBatch) {
        for i in 0..b.len() {
            let r = b.get(i);
            self.rows += 1;
            self.next_example = Some(self.next_example.unwrap_or(0).max(r.row() + 1));
            if r.label() >= 0 {
                self.labeled += 1;
                self.agree += (r.topk_idx()[0] as i64 == r.label()) as u64;
            }
            let lt = r.log_tail()[0] as f64;
            self.mass_sum += -lt.exp_m1(); // 1 - tail mass, at the first temperature
        }
    }
    fn add_prior(&mut self, p: &[f64]) {
        if self.prior_sum.len() != p.len() {
            self.prior_sum = vec![0.0; p.len()];
        }
        for (a, b) in self.prior_sum.iter_mut().zip(p) {
            *a += b;
        }
    }
    fn add_members(&mut self, m: &[[u64; 2]]) {
        if self.members.len() != m.len() {
            self.members = vec![[0, 0]; m.len()];
        }
        for (a, b) in self.members.iter_mut().zip(m) {
            a[0] += b[0];
            a[1] += b[1];
        }
    }
    fn stats(&self) -> Stats {
        let n = self.rows.max(1) as f64;
        Stats {
            class_prior: self.prior_sum.iter().map(|s| s / n).collect(),
            top1_agreement: (self.labeled > 0).then(|| self.agree as f64 / self.labeled as f64),
            labeled_rows: self.labeled,
            mean_topk_mass: self.mass_sum / n,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Partial {
    manifest: Manifest,
    accum: Accum,
}

/// What a directory already holds, compared with the cache about to be written.
#[derive(Debug, PartialEq)]
pub enum Existing {
    Nothing,
    /// A complete cache with the same signature and layout.
    Same(Box<Manifest>),
    Different(String),
}

fn same_layout(a: &Manifest, b: &Manifest) -> Option<String> {
    if a.signature != b.signature {
        let (x, y) = (&a.signature, &b.signature);
        let diff: Vec<String> = [
            ("teacher", &x.teacher, &y.teacher),
            ("dataset", &x.dataset, &y.dataset),
            ("classes", &x.classes, &y.classes),
            ("augmentation", &x.augmentation, &y.augmentation),
        ]
        .iter()
        .filter(|(_, p, q)| p != q)
        .map(|(n, p, q)| format!("{n} {p} vs {q}"))
        .collect();
        return Some(format!("another signature: {}", diff.join(", ")));
    }
    if a.format_version != b.format_version {
        return Some(format!("format version {} != {}", a.format_version, b.format_version));
    }
    if a.spec() != b.spec() || a.encoding != b.encoding || a.block_rows != b.block_rows || a.part != b.part {
        return Some(format!(
            "layout C={} K={} T={:?} {:?} {} vs C={} K={} T={:?} {:?} {}",
            a.classes,
            a.top_k,
            a.temperatures,
            a.encoding,
            a.logit_dtype.name(),
            b.classes,
            b.top_k,
            b.temperatures,
            b.encoding,
            b.logit_dtype.name()
        ));
    }
    None
}

/// Looks at `dir` for a cache (complete, or partial) and compares it with `want`.
pub fn check_existing(dir: &Path, want: &Manifest) -> Result<Existing> {
    let mpath = crate::format::manifest::manifest_path(dir);
    if mpath.exists() {
        let m = Manifest::load(&mpath).map_err(|e| Error::Exists { path: dir.into(), why: format!("its manifest is unreadable: {e}") })?;
        return Ok(match same_layout(&m, want) {
            None => Existing::Same(Box::new(m)),
            Some(why) => Existing::Different(why),
        });
    }
    Ok(Existing::Nothing)
}

pub struct CacheWriter {
    dir: PathBuf,
    spec: RowSpec,
    opts: WriterOptions,
    manifest: Manifest,
    accum: Accum,
    pending: RowBatch,
    pending_prior: Vec<f64>,
    pending_prior_end: Option<u64>,
    pending_members: Vec<[u64; 2]>,
    resumed_rows: u64,
    resumed_shards: usize,
}

/// Fault injection for the crash-and-resume tests: with KDCACHE_CRASH_AFTER_SHARDS=n the process aborts
/// (no cleanup, as in a crash) right after its n-th shard is published.
fn crash_point(shards_this_run: usize) {
    if let Ok(n) = std::env::var("KDCACHE_CRASH_AFTER_SHARDS")
        && n.parse::<usize>().ok() == Some(shards_this_run)
    {
        std::process::abort();
    }
}

impl CacheWriter {
    /// Prepares `dir` for a cache described by `spec` and `signature`. A partial build of the same cache
    /// is resumed (its verified shards are kept: see [`CacheWriter::resumed_rows`]); a different cache
    /// is refused unless `opts.overwrite`.
    pub fn create(dir: &Path, spec: &RowSpec, signature: Signature, opts: WriterOptions, part: Option<String>) -> Result<Self> {
        spec.validate()?;
        if opts.block_rows == 0 || opts.shard_rows == 0 {
            return Err(Error::invalid("block and shard sizes must be at least 1 row"));
        }
        if opts.block_rows > crate::format::manifest::MAX_BLOCK_ROWS {
            return Err(Error::invalid(format!("blocks of {} rows exceed the format's {}", opts.block_rows, crate::format::manifest::MAX_BLOCK_ROWS)));
        }
        let mut manifest = Manifest::new(spec, opts.encoding, opts.block_rows, signature);
        manifest.part = part;
        std::fs::create_dir_all(dir).ctx(dir)?;
        let mut accum = Accum::default();
        match check_existing(dir, &manifest) {
            Ok(Existing::Nothing) => {}
            Ok(Existing::Same(m)) if !opts.overwrite => return Err(Error::Complete { path: dir.into(), rows: m.rows }),
            Ok(Existing::Different(why)) if !opts.overwrite => return Err(Error::Exists { path: dir.into(), why }),
            Err(e) if !opts.overwrite => return Err(e),
            _ => remove_cache_files(dir)?,
        }
        // resume a partial build of the same cache
        let ppath = dir.join(PARTIAL);
        if ppath.exists() {
            let partial: Option<Partial> = std::fs::read(&ppath).ok().and_then(|b| serde_json::from_slice(&b).ok());
            match partial {
                Some(p) if same_layout(&p.manifest, &manifest).is_none() => {
                    let mut kept = vec![];
                    for s in &p.manifest.shards {
                        if file_matches(&dir.join(&s.file), s) {
                            kept.push(s.clone());
                        } else {
                            break;
                        }
                    }
                    if kept.len() == p.manifest.shards.len() {
                        accum = p.accum;
                        manifest.rows = kept.iter().map(|s| s.rows).sum();
                        manifest.shards = kept;
                    } // else: a damaged shard; start over (stats cannot be split per shard)
                }
                Some(p) if !opts.overwrite => {
                    return Err(Error::Exists {
                        path: dir.into(),
                        why: format!("a partial build of another cache: {}", same_layout(&p.manifest, &manifest).unwrap_or_default()),
                    });
                }
                _ => {}
            }
        }
        let resumed_rows = manifest.rows;
        let resumed_shards = manifest.shards.len();
        Ok(CacheWriter {
            dir: dir.into(),
            spec: spec.clone(),
            pending: RowBatch::new(spec),
            pending_prior: vec![],
            pending_prior_end: None,
            pending_members: vec![],
            opts,
            manifest,
            accum,
            resumed_rows,
            resumed_shards,
        })
    }

    /// Rows already written by an earlier, interrupted run of the same build: the caller starts after them.
    pub fn resumed_rows(&self) -> u64 {
        self.resumed_rows
    }

    /// One past the largest example index in the rows written (and kept) so far.
    pub fn next_example(&self) -> Option<u64> {
        self.accum.next_example
    }

    /// One past the largest example index of a batch whose prior the kept shards' statistics hold: a
    /// resumed run must not give the prior of rows below it again.
    pub fn prior_end(&self) -> Option<u64> {
        self.accum.prior_end
    }

    /// An ensemble's members (fingerprint, weight), in order: called once, before the first row.
    pub fn set_members(&mut self, members: &[(String, f64)]) {
        self.manifest.ensemble =
            Some(members.iter().map(|(t, w)| EnsembleMember { teacher: t.clone(), weight: *w, top1_agreement: None, mixture_agreement: None }).collect());
    }

    /// Counts of the rows about to be pushed, per ensemble member: labelled rows whose argmax (the
    /// member's) is the label, and rows where it is the mixture's argmax.
    pub fn add_member_counts(&mut self, counts: &[[u64; 2]]) {
        if self.pending_members.len() != counts.len() {
            self.pending_members = vec![[0, 0]; counts.len()];
        }
        for (a, b) in self.pending_members.iter_mut().zip(counts) {
            a[0] += b[0];
            a[1] += b[1];
        }
    }

    pub fn rows_written(&self) -> u64 {
        self.manifest.rows + self.pending.len() as u64
    }

    /// Appends rows. `prior`, when given, is the sum over these rows of the teacher's full softmax
    /// (length C) — the class prior cannot be rebuilt from the top-K alone.
    pub fn push(&mut self, batch: &RowBatch, prior: Option<&[f64]>) -> Result<()> {
        batch.check_lengths()?;
        if let Some(p) = prior {
            if p.len() as u64 != self.spec.classes {
                return Err(Error::Internal(format!("prior of length {} for C = {}", p.len(), self.spec.classes)));
            }
            if self.pending_prior.is_empty() {
                self.pending_prior = vec![0.0; p.len()];
            }
            for (a, b) in self.pending_prior.iter_mut().zip(p) {
                *a += b;
            }
            if let Some(last) = batch.row.iter().max() {
                self.pending_prior_end = Some(self.pending_prior_end.unwrap_or(0).max(last + 1));
            }
        }
        let mut start = 0;
        while start < batch.len() {
            let room = self.opts.shard_rows - self.pending.len();
            let end = (start + room).min(batch.len());
            self.pending.extend_rows(batch, start..end);
            start = end;
            if self.pending.len() == self.opts.shard_rows {
                self.flush_shard()?;
            }
        }
        Ok(())
    }

    fn flush_shard(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let idx = self.manifest.shards.len();
        let file = format!("shard-{idx:05}.{}", self.opts.encoding.ext());
        let path = self.dir.join(&file);
        let tmp = tmp_path(&path);
        let res = match self.opts.encoding {
            Encoding::Kds => kds::write(&tmp, &self.spec, &self.pending, self.opts.block_rows).map(|(n, h)| (n, h, vec![])),
            Encoding::Parquet => parquet::write(&tmp, &self.spec, &self.pending, self.opts.block_rows),
        };
        let (bytes, hash, blocks) = res.inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        // the codecs fsync what they write; publish renames it into place and syncs the directory
        crate::fsio::publish(&tmp, &path)?;
        let rows = self.pending.len() as u64;
        let block_xxh3 = blocks.into_iter().map(xxh3_hex).collect();
        self.manifest.shards.push(ShardInfo { file, first_row: self.manifest.rows, rows, bytes, xxh3: xxh3_hex(hash), block_xxh3 });
        self.manifest.rows += rows;
        self.accum.add_rows(&self.pending);
        if !self.pending_prior.is_empty() {
            self.accum.add_prior(&self.pending_prior);
            self.pending_prior.iter_mut().for_each(|x| *x = 0.0);
        }
        if !self.pending_members.is_empty() {
            self.accum.add_members(&self.pending_members);
            self.pending_members.iter_mut().for_each(|x| *x = [0, 0]);
        }
        if let Some(end) = self.pending_prior_end.take() {
            self.accum.prior_end = Some(self.accum.prior_end.unwrap_or(0).max(end));
        }
        self.pending = RowBatch::new(&self.spec);
        let partial = Partial { manifest: self.manifest.clone(), accum: self.accum.clone() };
        let bytes = serde_json::to_vec(&partial).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.dir.join(PARTIAL), &bytes)?;
        crash_point(self.manifest.shards.len() - self.resumed_shards);
        Ok(())
    }

    /// Writes the last shard and publishes `_manifest.json`; removes the partial manifest (and a
    /// manifest under the name caches used before, which an overwrite may leave).
    pub fn finish(mut self, examples: u64, views: u32, created_by: &str) -> Result<Manifest> {
        self.flush_shard()?;
        self.manifest.stats = self.accum.stats();
        if let Some(e) = &mut self.manifest.ensemble {
            for (m, c) in e.iter_mut().zip(&self.accum.members) {
                m.top1_agreement = (self.accum.labeled > 0).then(|| c[0] as f64 / self.accum.labeled as f64);
                m.mixture_agreement = (self.accum.rows > 0).then(|| c[1] as f64 / self.accum.rows as f64);
            }
        }
        self.manifest.examples = examples;
        self.manifest.views = views;
        self.manifest.created_by = created_by.into();
        self.manifest.validate().map_err(Error::Internal)?;
        self.manifest.store(&self.dir.join(MANIFEST))?;
        let _ = std::fs::remove_file(self.dir.join(PARTIAL));
        let _ = std::fs::remove_file(self.dir.join(crate::format::manifest::LEGACY_MANIFEST));
        Ok(self.manifest)
    }
}

/// True when the file at `path` has the size and XXH3 that `s` records.
pub fn file_matches(path: &Path, s: &ShardInfo) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == s.bytes => file_xxh3(path).map(|h| xxh3_hex(h) == s.xxh3).unwrap_or(false),
        _ => false,
    }
}

/// Removes kdcache's own files (manifests, shards, temp files) from `dir`, nothing else.
fn remove_cache_files(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).ctx(dir)? {
        let e = e.ctx(dir)?;
        let name = e.file_name().to_string_lossy().to_string();
        let ours = name == MANIFEST
            || name == PARTIAL
            || name == crate::format::manifest::LEGACY_MANIFEST
            || name == crate::format::manifest::LEGACY_PARTIAL
            || name.starts_with("_manifest.") && name.ends_with(".tmp")
            || name.starts_with("manifest.") && name.ends_with(".tmp")
            || name.starts_with("shard-") && (name.ends_with(".kds") || name.ends_with(".parquet") || name.ends_with(".tmp"));
        if ours {
            std::fs::remove_file(e.path()).ctx(e.path())?;
        }
    }
    Ok(())
}
