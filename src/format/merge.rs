//! `kdcache merge`: joins the caches built by `--part i/N` into one cache. The parts must share a
//! signature and layout, and together be exactly parts 0..N of one build.
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::manifest::{MANIFEST, Manifest, ShardInfo, Stats, manifest_path};
use crate::format::writer::file_matches;

pub fn merge(parts: &[PathBuf], out: &Path, overwrite: bool) -> Result<Manifest> {
    if parts.is_empty() {
        return Err(Error::invalid("merge needs at least one part"));
    }
    let mut ms: Vec<(usize, usize, PathBuf, Manifest)> = vec![];
    for p in parts {
        let m = Manifest::load(&manifest_path(p))?;
        let (i, n) = m
            .part
            .as_deref()
            .and_then(|s| s.split_once('/'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .ok_or_else(|| Error::invalid(format!("{}: not a part cache (built without --part i/N)", p.display())))?;
        ms.push((i, n, p.clone(), m));
    }
    ms.sort_by_key(|x| x.0);
    let n = ms[0].1;
    let first = &ms[0].3;
    for (k, (i, nn, p, m)) in ms.iter().enumerate() {
        if *nn != n || *i != k {
            return Err(Error::invalid(format!("parts do not tile: expected part {k}/{n}, found {i}/{nn} at {}", p.display())));
        }
        if m.signature != first.signature {
            return Err(Error::Mismatch {
                what: format!("signature of {}", p.display()),
                cache: format!("{:?}", m.signature),
                given: format!("{:?}", first.signature),
            });
        }
        if m.format_version != first.format_version {
            return Err(Error::Mismatch {
                what: format!("format version of {}", p.display()),
                cache: m.format_version.to_string(),
                given: first.format_version.to_string(),
            });
        }
        if m.spec() != first.spec() || m.encoding != first.encoding || m.block_rows != first.block_rows {
            return Err(Error::Mismatch { what: format!("layout of {}", p.display()), cache: format!("{:?}", m.spec()), given: format!("{:?}", first.spec()) });
        }
    }
    if ms.len() != n {
        return Err(Error::invalid(format!("{} parts given, the build has {n}", ms.len())));
    }
    let total: u64 = ms.iter().map(|x| x.3.examples).sum();
    for (i, _, p, m) in &ms {
        let want = total * (*i as u64 + 1) / n as u64 - total * *i as u64 / n as u64;
        if m.examples != want {
            return Err(Error::invalid(format!("{}: part {i}/{n} covers {} examples, expected {want} of {total}", p.display(), m.examples)));
        }
    }
    std::fs::create_dir_all(out).ctx(out)?;
    if manifest_path(out).exists() && !overwrite {
        return Err(Error::Exists { path: out.into(), why: "it already holds a cache".into() });
    }
    let mut merged = first.clone();
    merged.part = None;
    merged.shards.clear();
    merged.rows = 0;
    merged.examples = total;
    let mut stats = Stats { class_prior: vec![0.0; first.stats.class_prior.len()], ..Default::default() };
    let (mut agree, mut mass) = (0.0, 0.0);
    // an ensemble's member agreements, weighted by each part's labelled rows and rows
    let mut members = vec![[0.0f64; 2]; first.ensemble.as_ref().map_or(0, |e| e.len())];
    for (_, _, p, m) in &ms {
        for s in &m.shards {
            let src = p.join(&s.file);
            if !file_matches(&src, s) {
                return Err(Error::corrupt(&src, None, "size or checksum differs from its manifest"));
            }
            let file = format!("shard-{:05}.{}", merged.shards.len(), merged.encoding.ext());
            let dst = out.join(&file);
            let _ = std::fs::remove_file(&dst);
            if std::fs::hard_link(&src, &dst).is_err() {
                std::fs::copy(&src, &dst).ctx(&dst)?;
            }
            merged.shards.push(ShardInfo { file, first_row: merged.rows, ..s.clone() });
            merged.rows += s.rows;
        }
        for (a, b) in stats.class_prior.iter_mut().zip(&m.stats.class_prior) {
            *a += b * m.rows as f64;
        }
        agree += m.stats.top1_agreement.unwrap_or(0.0) * m.stats.labeled_rows as f64;
        for (acc, e) in members.iter_mut().zip(m.ensemble.iter().flatten()) {
            acc[0] += e.top1_agreement.unwrap_or(0.0) * m.stats.labeled_rows as f64;
            acc[1] += e.mixture_agreement.unwrap_or(0.0) * m.rows as f64;
        }
        stats.labeled_rows += m.stats.labeled_rows;
        mass += m.stats.mean_topk_mass * m.rows as f64;
    }
    let rows = merged.rows.max(1) as f64;
    stats.class_prior.iter_mut().for_each(|x| *x /= rows);
    stats.top1_agreement = (stats.labeled_rows > 0).then(|| agree / stats.labeled_rows as f64);
    stats.mean_topk_mass = mass / rows;
    if let Some(e) = &mut merged.ensemble {
        for (m, acc) in e.iter_mut().zip(&members) {
            m.top1_agreement = (stats.labeled_rows > 0).then(|| acc[0] / stats.labeled_rows as f64);
            m.mixture_agreement = Some(acc[1] / rows);
        }
    }
    merged.stats = stats;
    merged.created_by = format!("kdcache merge of {n} parts");
    merged.validate().map_err(Error::Internal)?;
    merged.store(&out.join(MANIFEST))?;
    Ok(merged)
}
