//! The inspection commands on real files through the real binary; these work with or without libtorch.
mod cli_common;
use cli_common::*;
use kdcache::data::array::{self, ArrayDtype};
use std::io::Read;

fn write_logits(dir: &std::path::Path, n: usize, c: usize, seed: u32) -> (Vec<f32>, Vec<i64>) {
    let z: Vec<f32> = (0..n * c).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 10000) as f32 / 700.0 - 5.0).collect();
    let y: Vec<i64> = (0..n as i64).map(|i| (i * 3) % c as i64).collect();
    array::write_npy(&dir.join("z.npy"), ArrayDtype::F32, &[n, c], bytemuck::cast_slice(&z)).unwrap();
    array::write_npy(&dir.join("y.npy"), ArrayDtype::I64, &[n], bytemuck::cast_slice(&y)).unwrap();
    (z, y)
}

/// `import` of `dir`'s z.npy and y.npy (from [`write_logits`]) at temperatures 1 and 3, in blocks of 64
/// rows and shards of 128, into `out`.
fn import(dir: &std::path::Path, out: &std::path::Path, k: usize, format: &str, extra: &[&str]) {
    let (z, y, k) = (dir.join("z.npy"), dir.join("y.npy"), k.to_string());
    let mut args = vec!["import", "--logits", p(&z), "--labels", p(&y), "--top-k", &k, "--temperatures", "1,3", "--out", p(out)];
    args.extend(["--format", format, "--block-rows", "64", "--shard-rows", "128"]);
    args.extend_from_slice(extra);
    ok(&args);
}

#[test]
fn import_dump_verify_match_the_full_softmax() {
    let t = tempfile::tempdir().unwrap();
    let (n, c, k) = (300, 50, 7);
    let (z, y) = write_logits(t.path(), n, c, 1);
    for fmt in ["kds", "parquet"] {
        let out = t.path().join(fmt);
        import(t.path(), &out, k, fmt, &["--dtype", "f32"]);
        assert!(ok(&["verify", p(&out)]).starts_with("ok:"));
        let rows = rows_json(&out);
        assert_eq!(rows.as_array().unwrap().len(), n);
        for i in [0usize, 17, 299] {
            let zi = &z[i * c..(i + 1) * c];
            let row = &rows[i];
            assert_eq!(row["label"], y[i]);
            for (ti, t) in [1.0f64, 3.0].iter().enumerate() {
                let total: f64 = zi.iter().map(|&v| (v as f64 / t).exp()).sum();
                let mut order: Vec<usize> = (0..c).collect();
                order.sort_by(|&a, &b| zi[b].partial_cmp(&zi[a]).unwrap().then(a.cmp(&b)));
                for r in 0..k {
                    assert_eq!(row["ranks"][r]["class"], order[r] as u64, "{fmt} row {i} rank {r}");
                    let pr = row["ranks"][r]["p"][ti].as_f64().unwrap();
                    assert!((pr - (zi[order[r]] as f64 / t).exp() / total).abs() < 1e-5);
                }
                let tail: f64 = order[k..].iter().map(|&j| (zi[j] as f64 / t).exp()).sum::<f64>() / total;
                assert!((row["tail_mass"][ti].as_f64().unwrap() - tail).abs() < 1e-5 * (1.0 + tail));
            }
        }
    }
    // same rows whatever the encoding
    assert_eq!(rows_json(&t.path().join("kds")), rows_json(&t.path().join("parquet")));
}

/// pyarrow, polars and DuckDB (from the test venv that `make setup` builds) read a fresh Parquet cache
/// the way their users would, and agree with `kdcache dump --json` on every row: ids, logits, normalisers,
/// tail masses and the teacher probabilities recomputed from them.
#[test]
fn three_clients_read_a_parquet_cache() {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let py = venv.join("bin/python");
    if !py.exists() {
        eprintln!("SKIPPED: no .venv (run `make setup`)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (n, k) = (300, 7);
    write_logits(t.path(), n, 50, 2);
    let out = t.path().join("c");
    import(t.path(), &out, k, "parquet", &[]);
    let rows = rows_json(&out);
    let script = r#"
import glob, json, math, sys
import duckdb, polars as pl, pyarrow.parquet as pq
d = sys.argv[1]
def rows_of(cols):
    out = []
    for i in range(len(cols["row"])):
        # format 2 stores T0·log p(T0) (T0 = the first temperature, here 1): the logit is that plus T0·lse(T0)
        lse = list(cols["lse"][i]); logit = [float(x) + 1.0 * lse[0] for x in cols["topk_logit"][i]]
        out.append({"row": int(cols["row"][i]), "label": int(cols["label"][i]), "ids": [int(x) for x in cols["topk_idx"][i]], "logit": logit,
                    "lse": [float(x) for x in lse], "tail": [math.exp(x) for x in cols["log_tail"][i]],
                    "p": [[math.exp(z / T - l) for z in logit] for T, l in zip([1.0, 3.0], lse)]})
    return sorted(out, key=lambda r: r["row"])
names = ["row", "label", "topk_idx", "topk_logit", "lse", "log_tail"]
t = pq.read_table(d)                      # the directory: `_manifest.json` is skipped like `_SUCCESS`
res = {"pyarrow": rows_of({c: t.column(c).to_pylist() for c in names})}
f = pl.read_parquet(d + "/*.parquet")     # polars refuses a directory holding any non-Parquet file
res["polars"] = rows_of({c: f[c].to_list() for c in names})
q = duckdb.sql(f"SELECT {', '.join(names)} FROM read_parquet('{d}') ORDER BY row").fetchall()
res["duckdb"] = rows_of({c: [r[i] for r in q] for i, c in enumerate(names)})
print(json.dumps(res))
"#;
    let o = std::process::Command::new(&py).args(["-c", script, p(&out)]).output().unwrap();
    assert!(o.status.success(), "pyarrow/polars/duckdb (installed by `make setup`) failed: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for client in ["pyarrow", "polars", "duckdb"] {
        let got = v[client].as_array().unwrap();
        assert_eq!(got.len(), n, "{client}");
        for (i, (g, want)) in got.iter().zip(rows.as_array().unwrap()).enumerate() {
            assert_eq!(g["row"], want["row"], "{client} row {i}");
            assert_eq!(g["label"], want["label"], "{client} row {i}");
            for ti in 0..2 {
                assert_eq!(g["lse"][ti].as_f64().unwrap() as f32, want["lse"][ti].as_f64().unwrap() as f32, "{client} row {i}");
                let (a, b) = (g["tail"][ti].as_f64().unwrap(), want["tail_mass"][ti].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-6 * b.max(1e-30), "{client} row {i}: tail {a} vs {b}");
            }
            for r in 0..k {
                let w = &want["ranks"][r];
                assert_eq!(g["ids"][r], w["class"], "{client} row {i} rank {r}");
                let (a, b) = (g["logit"][r].as_f64().unwrap(), w["logit"].as_f64().unwrap());
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{client} row {i} rank {r}: logit {a} vs {b}");
                for ti in 0..2 {
                    let (a, b) = (g["p"][ti][r].as_f64().unwrap(), w["p"][ti].as_f64().unwrap());
                    assert!((a - b).abs() <= 1e-6 * b, "{client} row {i} rank {r}: p {a} vs {b}");
                }
            }
        }
    }
}

/// A flipped byte inside a Parquet page is caught by the row group's hash on every read, not only by
/// `verify`'s whole-file hash.
#[test]
fn a_damaged_parquet_page_is_refused_on_read() {
    let t = tempfile::tempdir().unwrap();
    write_logits(t.path(), 200, 30, 5);
    let out = t.path().join("c");
    ok(&["import", "--logits", p(&t.path().join("z.npy")), "--top-k", "5", "--out", p(&out), "--format", "parquet", "--dtype", "f32", "--block-rows", "50"]);
    let shard = out.join("shard-00000.parquet");
    let mut b = std::fs::read(&shard).unwrap();
    b[200] ^= 0x01; // inside the first row group's column chunks (they start after the 4-byte magic)
    std::fs::write(&shard, &b).unwrap();
    bad(&["dump", p(&out), "--rows", "0..10", "--json"], "checksum mismatch");
    bad(&["verify", p(&out)], "checksum");
}

/// A shard whose footer declares a schema node with 2^30 children (found by the fuzzer): the parquet
/// crate sized a vector by that count before reading any child (13 GB for a 7 KB file). Under an 8 GiB
/// address-space limit that allocation aborted the process; now the footer is refused, exit 2.
#[test]
fn a_footer_declaring_a_billion_schema_children_is_refused() {
    use std::os::unix::process::CommandExt;
    let t = tempfile::tempdir().unwrap();
    write_logits(t.path(), 50, 30, 5);
    let out = t.path().join("c");
    ok(&["import", "--logits", p(&t.path().join("z.npy")), "--top-k", "5", "--out", p(&out), "--format", "parquet"]);
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/parquet_shard/oom-schema-children");
    std::fs::copy(seed, out.join("shard-00000.parquet")).unwrap();
    let mut cmd = kd();
    cmd.args(["dump", p(&out), "--rows", "0..1"]);
    // SAFETY: setrlimit only, between fork and exec
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 8 << 30, rlim_max: 8 << 30 };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{:?}: {err}", o.status);
    assert!(err.contains("shard-00000.parquet") && err.contains("corrupt"), "{err}");
}

#[test]
fn dump_into_a_closed_pipe_exits_zero() {
    let t = tempfile::tempdir().unwrap();
    write_logits(t.path(), 2000, 30, 3);
    let out = t.path().join("c");
    ok(&["import", "--logits", p(&t.path().join("z.npy")), "--top-k", "10", "--out", p(&out)]);
    let mut child =
        kd().args(["dump", p(&out), "--rows", "0..2000"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut head = [0u8; 64];
    child.stdout.as_mut().unwrap().read_exact(&mut head).unwrap();
    drop(child.stdout.take()); // like `| head -c 64`
    let st = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(st.success(), "exit {st:?}: {err}");
    assert!(err.is_empty(), "stderr: {err}");
}

#[test]
fn bad_inputs_give_one_error_and_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write_logits(d, 50, 10, 4);
    let z = p(&d.join("z.npy")).to_string();
    // K above C: every class is kept
    ok(&["import", "--logits", &z, "--top-k", "11", "--out", p(&d.join("a"))]);
    let man: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("a/_manifest.json")).unwrap()).unwrap();
    assert_eq!(man["top_k"], 10);
    // NaN logits: the row and class are named, nothing is published
    let mut v: Vec<f32> = vec![0.5; 50 * 10];
    v[23 * 10 + 4] = f32::NAN;
    array::write_npy(&d.join("nan.npy"), ArrayDtype::F32, &[50, 10], bytemuck::cast_slice(&v)).unwrap();
    bad(&["import", "--logits", p(&d.join("nan.npy")), "--top-k", "3", "--out", p(&d.join("b"))], "row 23, class 4");
    assert!(!d.join("b/_manifest.json").exists());
    // wrong dtype and rank
    array::write_npy(&d.join("i.npy"), ArrayDtype::I64, &[5, 2], &[0u8; 80]).unwrap();
    bad(&["import", "--logits", p(&d.join("i.npy")), "--top-k", "1", "--out", p(&d.join("c"))], "must be a float array");
    // missing things: each cause once, on one line (the helper checks both)
    bad(&["import", "--logits", p(&d.join("none.npy")), "--top-k", "1", "--out", p(&d.join("c"))], "No such file");
    bad(&["dump", p(&d.join("nothing"))], "no such cache directory");
    bad(&["verify", p(d)], "not a kdcache cache");
    bad(&["compare", p(&d.join("nothing"))], "summary.json");
    array::write_npy(&d.join("r1.npy"), ArrayDtype::F32, &[8], &[0u8; 32]).unwrap();
    bad(&["import", "--logits", p(&d.join("r1.npy")), "--top-k", "1", "--out", p(&d.join("c"))], "shape [N, C]");
    // labels out of range
    array::write_npy(&d.join("yb.npy"), ArrayDtype::I64, &[50], bytemuck::cast_slice(&vec![99i64; 50])).unwrap();
    bad(&["import", "--logits", &z, "--labels", p(&d.join("yb.npy")), "--top-k", "2", "--out", p(&d.join("c"))], "label 99");
    // an output directory holding a different cache
    let out = d.join("cache");
    ok(&["import", "--logits", &z, "--top-k", "3", "--out", p(&out)]);
    bad(&["import", "--logits", &z, "--top-k", "4", "--out", p(&out)], "--overwrite");
    ok(&["import", "--logits", &z, "--top-k", "4", "--out", p(&out), "--overwrite"]);
    assert!(ok(&["dump", p(&out), "--json"]).contains("\"top_k\":4"));
    // a manifest from a newer format version
    let m = std::fs::read_to_string(out.join("_manifest.json")).unwrap().replace("\"format_version\": 4", "\"format_version\": 7");
    std::fs::write(out.join("_manifest.json"), m).unwrap();
    bad(&["verify", p(&out)], "format version 7 is newer");
    bad(&["dump", p(&d.join("nowhere"))], "no such cache directory");
    bad(&["import", "--logits", p(&d.join("missing.npy")), "--top-k", "1", "--out", p(&d.join("c"))], "missing.npy");
}

#[test]
fn verify_names_a_flipped_byte() {
    let t = tempfile::tempdir().unwrap();
    write_logits(t.path(), 500, 40, 5);
    let out = t.path().join("c");
    ok(&["import", "--logits", p(&t.path().join("z.npy")), "--top-k", "8", "--out", p(&out), "--shard-rows", "200", "--block-rows", "50"]);
    let shard = out.join("shard-00001.kds");
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&shard, bytes).unwrap();
    let err = bad(&["verify", p(&out)], "shard-00001.kds");
    assert!(err.contains("checksum"), "{err}");
}

#[test]
fn report_renders_in_a_browser() {
    let t = tempfile::tempdir().unwrap();
    write_logits(t.path(), 400, 50, 6);
    let cache = t.path().join("c");
    ok(&["import", "--logits", p(&t.path().join("z.npy")), "--labels", p(&t.path().join("y.npy")), "--top-k", "8", "--out", p(&cache)]);
    let out = t.path().join("report");
    ok(&["report", p(&cache), "--out", p(&out)]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for chart in ["confidence", "rank_mass", "tail_mass", "prior", "agreement"] {
        assert!(out.join(format!("{chart}.svg")).exists(), "{chart}.svg missing");
        // the PNG: twice the SVG's size, not blank, with dark ink (axes, text) and coloured marks
        let png = resvg::tiny_skia::Pixmap::load_png(out.join(format!("{chart}.png"))).expect("a readable PNG");
        assert_eq!((png.width(), png.height()), (960, 760), "{chart}.png size");
        let px = png.pixels();
        let dark = px.iter().filter(|c| c.red() < 80 && c.green() < 80 && c.blue() < 80).count();
        let colour = px.iter().filter(|c| c.red().abs_diff(c.blue()) > 60 || c.green().abs_diff(c.blue()) > 60).count();
        assert!(dark > 2_000, "{chart}.png has almost no axes or text ({dark} dark pixels)");
        assert!(colour > 2_000, "{chart}.png has almost no data marks ({colour} coloured pixels)");
    }
    assert_eq!(html.matches("<svg").count(), 5, "one inline chart per figure");
    assert!(!html.contains("src=") && !html.contains("href="), "the page must be self-contained");
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|c| std::path::Path::new(c).exists());
    let Some(chromium) = chromium else {
        eprintln!("SKIPPED the browser check: no chromium (apt-get install chromium)");
        return;
    };
    let png = t.path().join("shot.png");
    let st = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,1800",
        ])
        .arg(format!("--user-data-dir={}", t.path().join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", out.join("report.html").display()))
        .output()
        .unwrap();
    assert!(png.exists(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&st.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert!(bytes.len() > 20_000, "the screenshot is nearly empty ({} bytes)", bytes.len());
}
