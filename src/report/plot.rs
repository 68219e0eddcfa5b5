//! Training curves as a self-contained SVG: training loss and held-out top-1 against step, one line per
//! run (so estimators can be compared side by side). Written directly as SVG (text is left to the
//! viewer's fonts), so plotting needs no font files or native libraries.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

#[derive(Default)]
struct Series {
    name: String,
    loss: Vec<(f64, f64)>,
    top1: Vec<(f64, f64)>,
}

fn read_run(dir: &Path) -> Result<Series> {
    let lines = crate::run::read_metrics(dir)?;
    let name = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
        .and_then(|v| v.get("loss").and_then(|l| l.as_str()).map(String::from))
        .unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
    let mut s = Series { name, ..Default::default() };
    for m in lines {
        let step = m.step as f64;
        if let Some(l) = m.loss {
            s.loss.push((step, l));
        }
        if let Some(e) = m.eval {
            s.top1.push((step, e.top1));
        }
    }
    Ok(s)
}

/// A tick label with as many decimals as the axis range needs (3 significant digits of the range).
fn tick(v: f64, range: f64) -> String {
    let d = if range > 0.0 { (2.0 - range.log10().floor()).clamp(0.0, 8.0) as usize } else { 3 };
    format!("{v:.d$}")
}

/// Draws one line-chart panel (420×300 plot area) at horizontal offset `x0`.
pub fn panel(svg: &mut String, x0: f64, title: &str, xlabel: &str, series: &[(String, &[(f64, f64)])]) {
    let (w, h, pad) = (420.0, 300.0, 50.0);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).filter(|p| p.1.is_finite()).collect();
    let _ = write!(svg, r#"<g transform="translate({x0},0)"><text x="{}" y="20" text-anchor="middle" font-size="14">{title}</text>"#, w / 2.0 + pad / 2.0);
    let _ = write!(svg, r##"<rect x="{pad}" y="30" width="{w}" height="{h}" fill="none" stroke="#444"/>"##);
    if pts.is_empty() {
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">no data</text></g>"#, pad + w / 2.0, 30.0 + h / 2.0);
        return;
    }
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    if xmax <= xmin {
        xmax = xmin + 1.0;
    }
    if ymax <= ymin {
        ymax = ymin + 1e-3;
    }
    let integer_x = pts.iter().all(|p| p.0.fract() == 0.0) && xmax - xmin >= 4.0;
    let sx = |x: f64| pad + (x - xmin) / (xmax - xmin) * w;
    let sy = |y: f64| 30.0 + h - (y - ymin) / (ymax - ymin) * h;
    for i in 0..=4 {
        let fy = ymin + (ymax - ymin) * i as f64 / 4.0;
        let fx = xmin + (xmax - xmin) * i as f64 / 4.0;
        let _ = write!(svg, r##"<text x="{}" y="{}" text-anchor="end" font-size="10">{}</text><line x1="{pad}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>"##, pad - 4.0, sy(fy) + 3.0, tick(fy, ymax - ymin), pad + w, sy(fy), sy(fy));
        // integer data (steps, ranks) gets integer ticks; the last label ends at the plot's edge
        let label = if integer_x { format!("{}", fx.round()) } else { tick(fx, xmax - xmin) };
        let anchor = if i == 4 { "end" } else { "middle" };
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="{anchor}" font-size="10">{label}</text>"#, sx(fx), 30.0 + h + 14.0);
    }
    // the legend goes at the top, middle or bottom of the right edge, wherever it covers fewest points
    let lh = 14.0 * (series.len() as f64 - 1.0);
    let covered = |y0: f64| pts.iter().filter(|p| sx(p.0) > pad + w - 70.0 && (y0 - 16.0..=y0 + lh + 8.0).contains(&sy(p.1))).count();
    let legend_y0 = [46.0, 30.0 + (h - lh) / 2.0, 30.0 + h - 10.0 - lh].into_iter().min_by_key(|&y0| covered(y0)).unwrap_or(46.0);
    let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="middle" font-size="11">{xlabel}</text>"#, pad + w / 2.0, 30.0 + h + 30.0);
    for (i, (name, s)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = s.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#, path.join(" "));
        if s.len() == 1 {
            let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#, sx(s[0].0), sy(s[0].1));
        }
        let _ = write!(svg, r#"<text x="{}" y="{}" font-size="11" fill="{c}">{name}</text>"#, pad + w - 60.0, legend_y0 + 14.0 * i as f64);
    }
    svg.push_str("</g>");
}

/// Plots the runs' curves into one SVG file.
pub fn training_curves(runs: &[PathBuf], out: &Path) -> Result<()> {
    crate::format::manifest::write_atomic(out, training_curves_svg(runs)?.as_bytes())
}

/// The runs' curves as an SVG document.
pub fn training_curves_svg(runs: &[PathBuf]) -> Result<String> {
    if runs.is_empty() {
        return Err(Error::invalid("no runs to plot"));
    }
    let series: Vec<Series> = runs.iter().map(|r| read_run(r)).collect::<Result<_>>()?;
    let mut svg = String::from(r#"<svg xmlns="http://www.w3.org/2000/svg" width="960" height="380" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#);
    panel(&mut svg, 0.0, "training loss", "step", &series.iter().map(|s| (s.name.clone(), s.loss.as_slice())).collect::<Vec<_>>());
    panel(&mut svg, 480.0, "held-out top-1 (full softmax)", "step", &series.iter().map(|s| (s.name.clone(), s.top1.as_slice())).collect::<Vec<_>>());
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// A one-panel line chart as an SVG document (480×380).
pub fn line_svg(title: &str, xlabel: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let mut svg = String::from(r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="380" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#);
    panel(&mut svg, 0.0, title, xlabel, &series.iter().map(|(n, v)| (n.clone(), v.as_slice())).collect::<Vec<_>>());
    svg.push_str("</svg>\n");
    svg
}

/// A bar chart as an SVG document (480×380); `labels[i]` under bar i.
pub fn bar_svg(title: &str, labels: &[String], values: &[f64]) -> String {
    let (w, h, pad) = (420.0, 300.0, 50.0);
    let mut svg = String::from(r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="380" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(svg, r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{title}</text>"#, w / 2.0 + pad / 2.0);
    let _ = write!(svg, r##"<rect x="{pad}" y="30" width="{w}" height="{h}" fill="none" stroke="#444"/>"##);
    let max = values.iter().cloned().fold(0.0f64, f64::max).max(1e-12);
    let n = values.len().max(1) as f64;
    let bw = w / n;
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = 30.0 + h - h * i as f64 / 4.0;
        let _ = write!(svg, r##"<text x="{}" y="{}" text-anchor="end" font-size="10">{}</text><line x1="{pad}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/>"##, pad - 4.0, y + 3.0, tick(v, max), pad + w);
    }
    let every = (values.len() / 10).max(1);
    for (i, &v) in values.iter().enumerate() {
        let bh = h * v / max;
        let _ = write!(svg, r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4"/>"##, pad + i as f64 * bw + 0.5, 30.0 + h - bh, (bw - 1.0).max(0.5), bh);
        if i % every == 0 {
            let _ = write!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="9">{}</text>"#, pad + (i as f64 + 0.5) * bw, 30.0 + h + 12.0, labels.get(i).map(String::as_str).unwrap_or(""));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// An SVG chart rasterised to PNG bytes (resvg) at `scale`×, text drawn with the system's sans-serif
/// fonts. Returns the PNG and whether a font was found (without one, text is left out of the PNG; the
/// SVG keeps it).
pub fn svg_to_png(svg: &str, scale: f32) -> Result<(Vec<u8>, bool)> {
    use resvg::{tiny_skia, usvg};
    static FONTS: std::sync::OnceLock<std::sync::Arc<usvg::fontdb::Database>> = std::sync::OnceLock::new();
    let fontdb = FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            db.load_system_fonts();
            // "sans-serif" resolves to the first of these that is installed
            for family in ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans", "Arial"] {
                if db.faces().any(|f| f.families.iter().any(|(n, _)| n == family)) {
                    db.set_sans_serif_family(family);
                    break;
                }
            }
            std::sync::Arc::new(db)
        })
        .clone();
    let has_font = !fontdb.is_empty();
    let opts = usvg::Options { fontdb, ..Default::default() };
    let tree = usvg::Tree::from_str(svg, &opts).map_err(|e| Error::Internal(format!("chart SVG does not parse: {e}")))?;
    let size = tree.size().to_int_size().scale_by(scale).ok_or_else(|| Error::Internal("chart has no size".into()))?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| Error::Internal("chart too large to rasterise".into()))?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    let png = pixmap.encode_png().map_err(|e| Error::Internal(format!("PNG encoding: {e}")))?;
    Ok((png, has_font))
}
