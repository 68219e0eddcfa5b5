//! `kdcache dump`: the manifest in brief, then rows with ranks, class ids, logits, teacher probabilities
//! and tail masses; as text or as JSON.
use std::io::Write;

use serde_json::json;

use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::format::reader::CacheReader;
use crate::format::rows::RowRef;

pub fn manifest_summary(m: &Manifest) -> serde_json::Value {
    json!({
        "format_version": m.format_version,
        "kdcache_version": m.kdcache_version,
        "encoding": m.encoding,
        "classes": m.classes,
        "top_k": m.top_k,
        "logit_dtype": m.logit_dtype,
        "temperatures": m.temperatures,
        "tail_samples": m.tail_samples,
        "aug_dim": m.aug_dim,
        "rows": m.rows,
        "examples": m.examples,
        "views": m.views,
        "block_rows": m.block_rows,
        "shards": m.shards.len(),
        "bytes": m.shards.iter().map(|s| s.bytes).sum::<u64>(),
        "signature": m.signature,
        "top1_agreement": m.stats.top1_agreement,
        "labeled_rows": m.stats.labeled_rows,
        "mean_topk_mass": m.stats.mean_topk_mass,
        "created_by": m.created_by,
        "part": m.part,
    })
}

fn row_json(r: RowRef<'_>, temps: &[f32], shown: usize) -> serde_json::Value {
    let ranks: Vec<_> = (0..shown)
        .map(|j| {
            let z = r.logit(j);
            let p: Vec<f64> = temps.iter().enumerate().map(|(ti, &t)| r.prob(j, ti, t as f64)).collect();
            json!({"rank": j, "class": r.topk_idx()[j], "logit": z, "p": p})
        })
        .collect();
    let tail: Vec<f64> = (0..temps.len()).map(|ti| r.tail_mass(ti)).collect();
    let mut v = json!({"row": r.row(), "view": r.view(), "label": r.label(), "lse": r.lse(), "tail_mass": tail, "ranks": ranks});
    if r.batch.m > 0 {
        v["tail_idx"] = json!(r.tail_idx());
        v["tail_cnt"] = json!(r.tail_cnt());
        if r.batch.tail_values {
            // each sample's logit z (unused slots: null)
            let z: Vec<Option<f64>> = (0..r.batch.m).map(|s| r.tail_logit(s).filter(|x| x.is_finite())).collect();
            v["tail_logit"] = json!(z);
        }
    }
    if r.batch.aug_dim > 0 {
        v["aug"] = json!(r.aug());
    }
    v
}

fn io(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

/// Writes the dump of cache rows `range` (its end may pass the last row; its start may not) to `out`,
/// each with its first `ranks` ranks (default: 10 as text, all as JSON).
pub fn dump(reader: &CacheReader, range: std::ops::Range<u64>, as_json: bool, ranks: Option<usize>, out: &mut dyn Write) -> Result<()> {
    let m = reader.manifest();
    if range.start >= m.rows && !range.is_empty() {
        return Err(Error::invalid(format!("--rows {}..{}: the cache has {} rows (0..{})", range.start, range.end, m.rows, m.rows)));
    }
    let range = range.start.min(m.rows)..range.end.min(m.rows);
    let shown = ranks.unwrap_or(if as_json { usize::MAX } else { 10 }).min(m.top_k);
    let temps = &m.temperatures;
    if as_json {
        write!(out, "{{\"manifest\":{},\"rows\":[", manifest_summary(m)).map_err(io)?;
    } else {
        let s = manifest_summary(m);
        writeln!(out, "cache {} ({})", reader.dir().display(), m.created_by).map_err(io)?;
        writeln!(
            out,
            "  format v{} {:?}, {} rows in {} shards ({} bytes), C = {}, K = {}, {} logits, T = {:?}, tail samples {}",
            m.format_version,
            m.encoding,
            m.rows,
            m.shards.len(),
            s["bytes"],
            m.classes,
            m.top_k,
            m.logit_dtype.name(),
            temps,
            m.tail_samples
        )
        .map_err(io)?;
        writeln!(out, "  teacher {}  dataset {}", m.signature.teacher, m.signature.dataset).map_err(io)?;
        let agree = m.stats.top1_agreement.map(|a| format!("{:.4}", a)).unwrap_or("n/a".into());
        writeln!(out, "  top-1 agreement with labels {agree}, mean top-K mass {:.4}", m.stats.mean_topk_mass).map_err(io)?;
        if let Some(e) = &m.ensemble {
            let pct = |x: Option<f64>| x.map(|a| format!("{:.1}%", 100.0 * a)).unwrap_or("n/a".into());
            writeln!(out, "  ensemble of {} (the mixture of their tempered distributions; logits are T0·log p):", e.len()).map_err(io)?;
            for t in e {
                writeln!(
                    out,
                    "    weight {:.4}  {}  top-1 agreement with labels {}, with the mixture {}",
                    t.weight,
                    t.teacher,
                    pct(t.top1_agreement),
                    pct(t.mixture_agreement)
                )
                .map_err(io)?;
            }
        }
    }
    let mut first = true;
    let mut pos = range.start;
    while pos < range.end {
        let hi = (pos + 4096).min(range.end);
        let batch = reader.get_rows(pos..hi)?;
        for i in 0..batch.len() {
            let r = batch.get(i);
            if as_json {
                if !first {
                    out.write_all(b",").map_err(io)?;
                }
                first = false;
                write!(out, "{}", row_json(r, temps, shown)).map_err(io)?;
            } else {
                let tail: Vec<String> = (0..temps.len()).map(|ti| format!("{:.4e}", r.tail_mass(ti))).collect();
                writeln!(out, "\nrow {} view {} label {}  tail mass {}", r.row(), r.view(), r.label(), tail.join(" ")).map_err(io)?;
                let ph: Vec<String> = temps.iter().map(|t| format!("p@T={t}")).collect();
                writeln!(out, "  {:>5} {:>9} {:>10}  {}", "rank", "class", "logit", ph.iter().map(|h| format!("{h:>10}")).collect::<String>()).map_err(io)?;
                for j in 0..shown {
                    let z = r.logit(j);
                    let ps: String = temps.iter().enumerate().map(|(ti, &t)| format!("{:>10.6}", r.prob(j, ti, t as f64))).collect();
                    writeln!(out, "  {:>5} {:>9} {:>10.4}  {ps}", j, r.topk_idx()[j], z).map_err(io)?;
                }
                if shown < batch.k {
                    writeln!(out, "  … {} more ranks (--ranks all)", batch.k - shown).map_err(io)?;
                }
            }
        }
        pos = hi;
    }
    if as_json {
        writeln!(out, "]}}").map_err(io)?;
    }
    out.flush().map_err(io)
}
