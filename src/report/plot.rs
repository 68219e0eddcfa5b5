//! Training curves as a self-contained SVG: training loss and held-out top-1 against step, and top-1
//! against seconds of training (time to accuracy), one line per run (so estimators can be compared side
//! by side). Written directly as SVG (text is left to the
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
    /// Held-out top-1 against seconds of training (runs that record it).
    top1_s: Vec<(f64, f64)>,
    /// Where a route of anchors moved on to the next cache: step, and seconds of training when recorded.
    switches: Vec<(f64, Option<f64>)>,
}

fn read_run(dir: &Path) -> Result<Series> {
    let lines = crate::run::read_metrics(dir)?;
    let name = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
        .and_then(|v| v.get("loss").and_then(|l| l.as_str()).map(String::from))
        .unwrap_or_else(|| dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
    // where the route moved on (its first cache starts the run: no mark)
    let switches = crate::run::route(&lines).iter().skip(1).map(|w| (w.step as f64, w.train_s)).collect();
    let mut s = Series { name, switches, ..Default::default() };
    for m in lines {
        let step = m.step as f64;
        if let Some(l) = m.loss {
            s.loss.push((step, l));
        }
        if let Some(e) = m.eval {
            s.top1.push((step, e.top1));
            if let Some(t) = m.train_s {
                s.top1_s.push((t, e.top1));
            }
        }
    }
    Ok(s)
}

/// An axis's ticks by Heckbert's "nice numbers" (Graphics Gems, 1990): a step of 1, 2, 2.5 or 5 × 10^k
/// near a fifth of the data's range, and the axis extended to the multiples of the step that enclose
/// the data, so that the labels are round values (0, 0.25, 0.5, …) rather than the data's extremes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ticks {
    /// The axis runs from `first * step` to `last * step`.
    first: i64,
    last: i64,
    step: f64,
    /// Decimals a label needs to show the step exactly.
    decimals: usize,
}

impl Ticks {
    /// About 5 ticks over [min, max]; `integer` (steps, ranks) keeps the step a whole number. A
    /// zero-width range is widened around its value; a non-finite one becomes [0, 1].
    fn new(min: f64, max: f64, integer: bool) -> Ticks {
        let (mut lo, mut hi) = if min.is_finite() && max.is_finite() { (min.min(max), min.max(max)) } else { (0.0, 1.0) };
        if hi - lo <= lo.abs().max(hi.abs()) * 1e-12 {
            let half = if lo == 0.0 { 0.5 } else { lo.abs() * 0.05 };
            (lo, hi) = (lo - half, hi + half);
        }
        let raw = (hi - lo) / 4.0;
        let k = raw.log10().floor() as i32;
        let f = raw / 10f64.powi(k);
        // the mantissa nearest f on a log scale (the thresholds are the neighbours' geometric means)
        let (mut m, mut k) = match f {
            f if f < 2f64.sqrt() => (1.0, k),
            f if f < 5f64.sqrt() => (2.0, k),
            f if f < 12.5f64.sqrt() => (2.5, k),
            f if f < 50f64.sqrt() => (5.0, k),
            _ => (1.0, k + 1),
        };
        if integer && k <= 0 {
            (m, k) = if k < 0 || m < 2.0 {
                (1.0, 0)
            } else if m == 2.5 {
                (2.0, 0)
            } else {
                (m, 0)
            };
        }
        let step = m * 10f64.powi(k);
        // a data value within a hair of a multiple of the step sits on that tick, not one further out
        let first = (lo / step + 1e-9).floor() as i64;
        let last = (hi / step - 1e-9).ceil() as i64;
        let decimals = (if m == 2.5 { 1 - k } else { -k }).clamp(0, 15) as usize;
        Ticks { first, last: last.max(first + 1), step, decimals }
    }

    fn lo(&self) -> f64 {
        self.first as f64 * self.step
    }

    fn hi(&self) -> f64 {
        self.last as f64 * self.step
    }

    /// The tick values, lowest first (computed as i × step, so 0 is exactly 0).
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        (self.first..=self.last).map(|i| i as f64 * self.step)
    }

    fn label(&self, v: f64) -> String {
        format!("{v:.0$}", self.decimals)
    }
}

/// Draws one line-chart panel (420×300 plot area) at horizontal offset `x0`.
pub fn panel(svg: &mut String, x0: f64, title: &str, xlabel: &str, series: &[(String, &[(f64, f64)])]) {
    panel_marked(svg, x0, title, xlabel, series, &[]);
}

/// [`panel`] with vertical dashed marks at `marks` (series index, x), in that series' colour: where a
/// run's route of anchors moved on to the next cache.
pub fn panel_marked(svg: &mut String, x0: f64, title: &str, xlabel: &str, series: &[(String, &[(f64, f64)])], marks: &[(usize, f64)]) {
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
    // integer data (steps, ranks) gets integer ticks
    let xt = Ticks::new(xmin, xmax, pts.iter().all(|p| p.0.fract() == 0.0));
    let yt = Ticks::new(ymin, ymax, false);
    let (xmin, xmax, ymin, ymax) = (xt.lo(), xt.hi(), yt.lo(), yt.hi());
    let sx = |x: f64| pad + (x - xmin) / (xmax - xmin) * w;
    let sy = |y: f64| 30.0 + h - (y - ymin) / (ymax - ymin) * h;
    for fy in yt.values() {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="10">{}</text><line x1="{pad}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>"##,
            pad - 4.0,
            sy(fy) + 3.0,
            yt.label(fy),
            pad + w,
            sy(fy),
            sy(fy)
        );
    }
    for (i, fx) in xt.values().enumerate() {
        // the last label ends at the plot's edge
        let anchor = if i as i64 == xt.last - xt.first { "end" } else { "middle" };
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="{anchor}" font-size="10">{}</text>"#, sx(fx), 30.0 + h + 14.0, xt.label(fx));
    }
    // the legend goes at the top, middle or bottom of the right edge, wherever it covers fewest points
    let lh = 14.0 * (series.len() as f64 - 1.0);
    // the legend's width follows its longest name (about 6 px a character at 11 px)
    let lw = series.iter().map(|s| s.0.chars().count()).max().unwrap_or(0) as f64 * 6.0;
    let lx = pad + w - lw.max(54.0) - 6.0;
    let covered = |y0: f64| pts.iter().filter(|p| sx(p.0) > lx - 10.0 && (y0 - 16.0..=y0 + lh + 8.0).contains(&sy(p.1))).count();
    let legend_y0 = [46.0, 30.0 + (h - lh) / 2.0, 30.0 + h - 10.0 - lh].into_iter().min_by_key(|&y0| covered(y0)).unwrap_or(46.0);
    let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="middle" font-size="11">{xlabel}</text>"#, pad + w / 2.0, 30.0 + h + 30.0);
    for &(i, x) in marks.iter().filter(|m| (xmin..=xmax).contains(&m.1)) {
        let c = COLORS[i % COLORS.len()];
        let _ = write!(svg, r#"<line class="switch" x1="{0:.1}" x2="{0:.1}" y1="30" y2="{1}" stroke="{c}" stroke-dasharray="4 3"/>"#, sx(x), 30.0 + h);
    }
    for (i, (name, s)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = s.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{}"/>"#, path.join(" "));
        if s.len() == 1 {
            let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#, sx(s[0].0), sy(s[0].1));
        }
        let _ = write!(svg, r#"<text x="{}" y="{}" font-size="11" fill="{c}">{name}</text>"#, lx, legend_y0 + 14.0 * i as f64);
    }
    svg.push_str("</g>");
}

/// Plots the runs' curves into one SVG file.
pub fn training_curves(runs: &[PathBuf], out: &Path) -> Result<()> {
    crate::fsio::write_atomic(out, training_curves_svg(runs)?.as_bytes())
}

/// The runs' curves as an SVG document.
pub fn training_curves_svg(runs: &[PathBuf]) -> Result<String> {
    if runs.is_empty() {
        return Err(Error::invalid("no runs to plot"));
    }
    let mut series: Vec<Series> = runs.iter().map(|r| read_run(r)).collect::<Result<_>>()?;
    // runs of one estimator (proposals, learning rates) are told apart by their directory's name
    let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
    for (s, r) in series.iter_mut().zip(runs) {
        if names.iter().filter(|n| **n == s.name).count() > 1
            && let Some(dir) = r.file_name()
        {
            s.name = format!("{} ({})", s.name, dir.to_string_lossy());
        }
    }
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="1440" height="380" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#,
    );
    // a route of anchors: a dashed line where each run moved on to its next cache
    let at_step: Vec<(usize, f64)> = series.iter().enumerate().flat_map(|(i, s)| s.switches.iter().map(move |w| (i, w.0))).collect();
    let at_time: Vec<(usize, f64)> = series.iter().enumerate().flat_map(|(i, s)| s.switches.iter().filter_map(move |w| w.1.map(|t| (i, t)))).collect();
    panel_marked(&mut svg, 0.0, "training loss", "step", &series.iter().map(|s| (s.name.clone(), s.loss.as_slice())).collect::<Vec<_>>(), &at_step);
    panel_marked(
        &mut svg,
        480.0,
        "held-out top-1 (full softmax)",
        "step",
        &series.iter().map(|s| (s.name.clone(), s.top1.as_slice())).collect::<Vec<_>>(),
        &at_step,
    );
    let by_time: Vec<(String, &[(f64, f64)])> = series.iter().map(|s| (s.name.clone(), s.top1_s.as_slice())).collect();
    panel_marked(&mut svg, 960.0, "top-1 against training time", "seconds of training (no evaluation)", &by_time, &at_time);
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// A one-panel line chart as an SVG document (480×380).
pub fn line_svg(title: &str, xlabel: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="380" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#,
    );
    panel(&mut svg, 0.0, title, xlabel, &series.iter().map(|(n, v)| (n.clone(), v.as_slice())).collect::<Vec<_>>());
    svg.push_str("</svg>\n");
    svg
}

/// A bar chart as an SVG document (480×380); `labels[i]` under bar i.
pub fn bar_svg(title: &str, labels: &[String], values: &[f64]) -> String {
    let (w, h, pad) = (420.0, 300.0, 50.0);
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="480" height="380" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#,
    );
    let _ = write!(svg, r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{title}</text>"#, w / 2.0 + pad / 2.0);
    let _ = write!(svg, r##"<rect x="{pad}" y="30" width="{w}" height="{h}" fill="none" stroke="#444"/>"##);
    // bars stand on 0: the axis runs from 0 to the first tick at or above the tallest bar
    let top = values.iter().cloned().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    let yt = Ticks::new(0.0, if top > 0.0 { top } else { 1.0 }, false);
    let max = yt.hi();
    let n = values.len().max(1) as f64;
    let bw = w / n;
    for v in yt.values() {
        let y = 30.0 + h - h * v / max;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="end" font-size="10">{}</text><line x1="{pad}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/>"##,
            pad - 4.0,
            y + 3.0,
            yt.label(v),
            pad + w
        );
    }
    let every = (values.len() / 10).max(1);
    for (i, &v) in values.iter().enumerate() {
        let bh = h * v / max;
        let _ = write!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#1f77b4"/>"##,
            pad + i as f64 * bw + 0.5,
            30.0 + h - bh,
            (bw - 1.0).max(0.5),
            bh
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="9">{}</text>"#,
                pad + (i as f64 + 0.5) * bw,
                30.0 + h + 12.0,
                labels.get(i).map(String::as_str).unwrap_or("")
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(min: f64, max: f64, integer: bool) -> (Vec<String>, f64) {
        let t = Ticks::new(min, max, integer);
        (t.values().map(|v| t.label(v)).collect(), t.step)
    }

    #[test]
    fn nice_ticks_for_a_few_ranges() {
        let cases: &[(f64, f64, bool, &[&str])] = &[
            (0.105, 0.999, false, &["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]),
            (0.0, 1.0, false, &["0.00", "0.25", "0.50", "0.75", "1.00"]),
            (0.6172, 0.6323, false, &["0.615", "0.620", "0.625", "0.630", "0.635"]),
            (0.0, 1234.0, false, &["0", "250", "500", "750", "1000", "1250"]),
            (17.0, 1234.0, true, &["0", "250", "500", "750", "1000", "1250"]),
            (1.0, 8.0, true, &["0", "2", "4", "6", "8"]),
            (1.0, 12.0, true, &["0", "2", "4", "6", "8", "10", "12"]),
            (0.0, 3.0, true, &["0", "1", "2", "3"]),
            (-3.7, -0.2, false, &["-4", "-3", "-2", "-1", "0"]),
            (-0.52, 0.31, false, &["-0.6", "-0.4", "-0.2", "0.0", "0.2", "0.4"]),
            (-1234.0, -17.0, false, &["-1250", "-1000", "-750", "-500", "-250", "0"]),
            (2.3e-5, 9.1e-5, false, &["0.00002", "0.00004", "0.00006", "0.00008", "0.00010"]),
            // zero-width ranges: widened around the value
            (0.0, 0.0, false, &["-0.50", "-0.25", "0.00", "0.25", "0.50"]),
            (0.5, 0.5, false, &["0.47", "0.48", "0.49", "0.50", "0.51", "0.52", "0.53"]),
            (-3.0, -3.0, false, &["-3.2", "-3.1", "-3.0", "-2.9", "-2.8"]),
            (100.0, 100.0, true, &["94", "96", "98", "100", "102", "104", "106"]),
            (0.0, 0.0, true, &["-1", "0", "1"]),
            // ends that sit on a tick stay the axis's ends
            (0.2, 0.8, false, &["0.2", "0.4", "0.6", "0.8"]),
            (f64::NAN, 1.0, false, &["0.00", "0.25", "0.50", "0.75", "1.00"]),
        ];
        for &(min, max, integer, want) in cases {
            let (got, step) = ticks(min, max, integer);
            assert_eq!(got, want, "[{min}, {max}] (integer {integer}), step {step}");
            let t = Ticks::new(min, max, integer);
            if min.is_finite() {
                assert!(t.lo() <= min && t.hi() >= max, "[{min}, {max}]: the axis {}..{} must hold the data", t.lo(), t.hi());
            }
            let mantissa = step / 10f64.powi(step.log10().floor() as i32);
            assert!([1.0, 2.0, 2.5, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9), "[{min}, {max}]: step {step}");
        }
    }

    /// The tick labels of one panel: (y axis, x axis), each in drawing order. A y label stands at the
    /// left of the plot (x = pad - 4); x labels stand below it.
    fn tick_labels(svg: &str) -> (Vec<String>, Vec<String>) {
        let (mut ys, mut xs) = (vec![], vec![]);
        for t in svg.split("<text ").skip(1) {
            let (attrs, rest) = t.split_once('>').unwrap();
            if !attrs.contains(r#"font-size="10""#) {
                continue;
            }
            let label = rest[..rest.find('<').unwrap()].to_string();
            if attrs.starts_with(r#"x="46""#) { ys.push(label) } else { xs.push(label) }
        }
        (ys, xs)
    }

    /// Every label of one axis is a round number: at most 2 significant digits once trailing zeros are
    /// stripped, or else a multiple of the step between labels, itself of at most 2 significant digits.
    fn assert_round(labels: &[String], what: &str) {
        let sig = |v: f64| {
            let digits: String = format!("{:.9}", v.abs()).chars().filter(char::is_ascii_digit).collect();
            digits.trim_start_matches('0').trim_end_matches('0').len()
        };
        let v: Vec<f64> = labels.iter().map(|l| l.parse().unwrap_or_else(|e| panic!("{what}: label {l:?}: {e}"))).collect();
        assert!(v.len() >= 3, "{what}: only {labels:?}");
        let step = v[1] - v[0];
        for (i, &x) in v.iter().enumerate() {
            let on_grid = sig(step) <= 2 && (x / step - (x / step).round()).abs() < 1e-6 && (x - v[0] - i as f64 * step).abs() < 1e-6 * step;
            assert!(sig(x) <= 2 || on_grid, "{what}: tick {x} is not round: {labels:?}");
        }
    }

    #[test]
    fn rendered_tick_labels_are_round() {
        let t = tempfile::tempdir().unwrap();
        let mut lines = String::new();
        for (i, step) in [17u64, 300, 611, 920, 1234].into_iter().enumerate() {
            let loss = crate::run::MetricsLine { step, epoch: i, loss: Some(0.999 - 0.2235 * i as f64), ..Default::default() };
            let eval = crate::run::EvalReport { top1: 0.6172 + 0.003775 * i as f64, ..Default::default() };
            let eval = crate::run::MetricsLine { step, epoch: i, eval: Some(eval), ..Default::default() };
            for m in [loss, eval] {
                lines.push_str(&serde_json::to_string(&m).unwrap());
                lines.push('\n');
            }
        }
        std::fs::write(t.path().join("metrics.jsonl"), lines).unwrap();
        let svg = training_curves_svg(&[t.path().to_path_buf()]).unwrap();
        let (loss, top1) = svg.split_once("held-out top-1").unwrap();
        for (name, panel) in [("loss", loss), ("top-1", top1)] {
            let (ys, xs) = tick_labels(panel);
            assert_round(&ys, &format!("{name} y"));
            assert_round(&xs, &format!("{name} x"));
        }
        // the report's charts: a rank–mass curve (integer x) and a bar chart
        let mass: Vec<(f64, f64)> = (1..=12).map(|k| (k as f64, 1.0 - 0.7f64.powi(k))).collect();
        let (ys, xs) = tick_labels(&line_svg("mass", "K", &[("T=1".into(), mass)]));
        assert_round(&ys, "rank-mass y");
        assert_round(&xs, "rank-mass x");
        let bars = bar_svg("b", &["a".into(), "b".into(), "c".into()], &[0.105, 0.7, 0.999 / 7.0]);
        assert_round(&tick_labels(&bars).0, "bar y");
    }
}
