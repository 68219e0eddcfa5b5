//! Helpers for the command-line tests: run the real binary, read its outputs.
#![allow(dead_code)]
use std::path::Path;
use std::process::{Command, Output};

pub fn kd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kdcache"));
    c.arg("--quiet");
    c
}

/// Runs kdcache with `args`; returns the output.
pub fn run(args: &[&str]) -> Output {
    kd().args(args).output().expect("kdcache runs")
}

/// Runs kdcache and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "kdcache {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Runs kdcache, asserts exit code 2 with one `error:` line containing `needle`, and no panic.
pub fn bad(args: &[&str], needle: &str) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "kdcache {args:?}: expected exit 2, got {:?}; stderr: {err}", o.status.code());
    assert!(!err.contains("panicked"), "kdcache {args:?} panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "want one error line, got: {err}");
    // the error is one line (besides one-line notes), and names each cause once
    let others: Vec<&str> = err.lines().filter(|l| !l.starts_with("error:") && !l.starts_with("note:") && !l.trim().is_empty()).collect();
    assert!(others.is_empty(), "kdcache {args:?}: the error spans several lines: {err}");
    let parts: Vec<&str> = lines[0].trim_start_matches("error: ").split(": ").collect();
    for (i, a) in parts.iter().enumerate() {
        assert!(a.len() < 8 || !parts[i + 1..].contains(a), "kdcache {args:?}: the cause {a:?} is printed twice: {err}");
    }
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "kdcache {args:?}: error lacks {needle:?}: {err}");
    err
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// `dump --json` rows of a cache.
pub fn rows_json(dir: &Path) -> serde_json::Value {
    let out = ok(&["dump", p(dir), "--json", "--rows", "0.."]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("dump --json is JSON");
    v["rows"].clone()
}
