//! `kdcache report DIR [--run RUN…]`: a self-contained HTML page (one file, charts inline as SVG) and one
//! SVG and one PNG per chart about what a cache holds — teacher confidence, the rank–mass curve (what K captures),
//! tail mass, the class prior, agreement with labels — and, given training runs, their curves.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::CacheReader;
use crate::fsio::write_atomic;
use crate::report::plot::{bar_svg, line_svg, svg_to_png, training_curves_svg};

/// Rows read for the statistics (spread evenly over the blocks).
const MAX_ROWS: u64 = 200_000;

pub struct Report {
    pub html: PathBuf,
    /// The chart files: one SVG and one PNG per chart.
    pub charts: Vec<PathBuf>,
    pub rows_read: u64,
}

pub fn report(dir: &Path, runs: &[PathBuf], out: &Path) -> Result<Report> {
    let reader = CacheReader::open(dir)?;
    let m = reader.manifest().clone();
    let k = m.top_k;
    let temps = &m.temperatures;
    let nt = temps.len();
    let nblocks = reader.blocks().len();
    let step = ((reader.rows() / MAX_ROWS) as usize).max(1);
    let mut conf_hist = [0f64; 20];
    let mut cum = vec![vec![0f64; k]; nt];
    let mut tail_hist = [0f64; 13]; // log10 τ in [-12, 0]
    let mut agree_bins = [(0f64, 0f64); 10];
    let mut n = 0u64;
    for bi in (0..nblocks).step_by(step.min(nblocks.max(1))) {
        let b = reader.read_block(bi)?;
        for i in 0..b.len() {
            let r = b.get(i);
            n += 1;
            for (ti, &t) in temps.iter().enumerate() {
                let mut acc = 0.0;
                for j in 0..k {
                    acc += r.prob(j, ti, t as f64);
                    cum[ti][j] += acc;
                }
            }
            let p1 = r.prob(0, 0, temps[0] as f64);
            conf_hist[((p1 * 20.0) as usize).min(19)] += 1.0;
            let lt = r.log_tail()[0] as f64 / std::f64::consts::LN_10;
            let bin = if lt.is_finite() { ((lt + 12.0).floor().clamp(0.0, 12.0)) as usize } else { 0 };
            tail_hist[bin] += 1.0;
            if r.label() >= 0 {
                let cb = ((p1 * 10.0) as usize).min(9);
                agree_bins[cb].0 += 1.0;
                agree_bins[cb].1 += (r.topk_idx()[0] as i64 == r.label()) as u8 as f64;
            }
        }
        if n >= MAX_ROWS {
            break;
        }
    }
    if n == 0 {
        return Err(Error::invalid(format!("{}: the cache holds no rows", dir.display())));
    }
    let nf = n as f64;
    let mut charts: Vec<(String, String, String)> = vec![]; // (file stem, title, svg)
    charts.push((
        "confidence".into(),
        format!("Teacher confidence: top-1 probability at T = {}", temps[0]),
        bar_svg(
            "teacher top-1 probability (fraction of rows)",
            &(0..20).map(|i| format!("{:.2}", i as f64 / 20.0)).collect::<Vec<_>>(),
            &conf_hist.map(|c| c / nf),
        ),
    ));
    let series: Vec<(String, Vec<(f64, f64)>)> =
        (0..nt).map(|ti| (format!("T={}", temps[ti]), (0..k).map(|j| ((j + 1) as f64, cum[ti][j] / nf)).collect())).collect();
    charts.push((
        "rank_mass".into(),
        "Rank–mass curve: mean teacher probability captured by the top K".into(),
        line_svg("mean cumulative teacher probability", "K", &series),
    ));
    charts.push((
        "tail_mass".into(),
        format!("Tail mass outside the top-{k} (log10, T = {})", temps[0]),
        bar_svg("rows by log10 tail mass", &(0..13).map(|i| format!("{}", i as i64 - 12)).collect::<Vec<_>>(), &tail_hist.map(|c| c / nf)),
    ));
    if !m.stats.class_prior.is_empty() {
        let mut top: Vec<(usize, f64)> = m.stats.class_prior.iter().copied().enumerate().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(30);
        charts.push((
            "prior".into(),
            "Teacher class prior: the 30 most probable classes".into(),
            bar_svg("mean teacher probability", &top.iter().map(|t| t.0.to_string()).collect::<Vec<_>>(), &top.iter().map(|t| t.1).collect::<Vec<_>>()),
        ));
    }
    if agree_bins.iter().any(|b| b.0 > 0.0) {
        let acc: Vec<(f64, f64)> = agree_bins.iter().enumerate().filter(|(_, b)| b.0 > 0.0).map(|(i, b)| ((i as f64 + 0.5) / 10.0, b.1 / b.0)).collect();
        let diag: Vec<(f64, f64)> = vec![(0.0, 0.0), (1.0, 1.0)];
        charts.push((
            "agreement".into(),
            "Agreement with labels by teacher confidence".into(),
            line_svg("fraction where teacher top-1 = label", "teacher top-1 probability", &[("teacher".into(), acc), ("calibrated".into(), diag)]),
        ));
    }
    if !runs.is_empty() {
        charts.push(("training".into(), "Training curves".into(), training_curves_svg(runs)?));
    }
    std::fs::create_dir_all(out).ctx(out)?;
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>kdcache report</title><style>body{font-family:sans-serif;margin:2em;max-width:1500px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}figure{display:inline-block;margin:1em 1em 1em 0;vertical-align:top}</style></head><body>",
    );
    let _ = write!(html, "<h1>kdcache report</h1><p><code>{}</code></p><table>", esc(&dir.display().to_string()));
    let agree = m.stats.top1_agreement.map(|a| format!("{a:.4}")).unwrap_or("n/a".into());
    for (key, val) in [
        ("rows", m.rows.to_string()),
        ("classes (C)", m.classes.to_string()),
        ("top-K", m.top_k.to_string()),
        ("logit dtype", m.logit_dtype.name().to_string()),
        ("temperatures", format!("{:?}", m.temperatures)),
        ("tail samples", m.tail_samples.to_string()),
        ("encoding", format!("{:?} in {} shards, {} bytes", m.encoding, m.shards.len(), m.shards.iter().map(|s| s.bytes).sum::<u64>())),
        ("teacher", m.signature.teacher.clone()),
        ("dataset", m.signature.dataset.clone()),
        ("top-1 agreement with labels", agree),
        ("mean top-K mass (T = first)", format!("{:.4}", m.stats.mean_topk_mass)),
        ("rows read for the charts", n.to_string()),
    ] {
        let _ = write!(html, "<tr><th>{key}</th><td>{}</td></tr>", esc(&val));
    }
    html.push_str("</table>");
    if !runs.is_empty() {
        // the runs as `compare` tabulates them: top-1 overall and by frequency band, time to accuracy
        let mut table = vec![];
        crate::report::compare::compare(runs, None, None, &mut table)?;
        let _ = write!(html, "<h2>Runs</h2><pre>{}</pre>", esc(&String::from_utf8_lossy(&table)));
    }
    let mut files = vec![];
    let mut warned_font = false;
    for (stem, title, svg) in &charts {
        let f = out.join(format!("{stem}.svg"));
        write_atomic(&f, svg.as_bytes())?;
        files.push(f);
        let (png, has_font) = svg_to_png(svg, 2.0)?;
        if !has_font && !warned_font {
            eprintln!("warning: no system font found; the PNG charts have no text (the SVGs and report.html do)");
            warned_font = true;
        }
        let f = out.join(format!("{stem}.png"));
        write_atomic(&f, &png)?;
        files.push(f);
        let _ = write!(html, "<figure><figcaption>{}</figcaption>{}</figure>", esc(title), svg);
    }
    html.push_str("</body></html>\n");
    let hp = out.join("report.html");
    write_atomic(&hp, html.as_bytes())?;
    Ok(Report { html: hp, charts: files, rows_read: n })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
