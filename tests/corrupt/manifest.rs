//! Damaged manifests: versions, garbage, checksums and sizes, shards that do not tile the rows, and file
//! names that leave the cache directory.
use std::path::Path;

use crate::damage::*;

#[test]
fn versions_and_garbage() {
    let (t, _) = base(Encoding::Kds);
    type Edit = Box<dyn Fn(&Path)>;
    let set = |k: &'static str, v: Value| -> Edit { Box::new(move |d: &Path| edit_manifest(d, |m| m[k] = v.clone())) };
    let raw = |s: &'static [u8]| -> Edit { Box::new(move |d: &Path| std::fs::write(d.join("_manifest.json"), s).unwrap()) };
    let cases: Vec<(&str, ErrorKind, Edit)> = vec![
        ("format_version 5", ErrorKind::Version, set("format_version", json!(5))),
        ("format_version 1000", ErrorKind::Version, set("format_version", json!(1000))),
        ("format_version 0", ErrorKind::Corrupt, set("format_version", json!(0))),
        ("format_version -1", ErrorKind::Corrupt, set("format_version", json!(-1))),
        ("format_version \"1\"", ErrorKind::Corrupt, set("format_version", json!("1"))),
        (
            "format_version missing",
            ErrorKind::Corrupt,
            Box::new(|d: &Path| {
                edit_manifest(d, |m| {
                    m.as_object_mut().unwrap().remove("format_version");
                })
            }),
        ),
        ("format is not kdcache", ErrorKind::Corrupt, set("format", json!("kdcachf"))),
        ("empty manifest", ErrorKind::Corrupt, raw(b"")),
        ("not JSON", ErrorKind::Corrupt, raw(b"{\"format\": \"kdcache\", ")),
        ("JSON array", ErrorKind::Corrupt, raw(b"[1, 2, 3]")),
        ("encoding unknown", ErrorKind::Corrupt, set("encoding", json!("csv"))),
        ("top_k 0", ErrorKind::Corrupt, set("top_k", json!(0))),
        ("top_k > classes", ErrorKind::Corrupt, set("top_k", json!(51))),
        ("no temperatures", ErrorKind::Corrupt, set("temperatures", json!([]))),
        ("negative temperature", ErrorKind::Corrupt, set("temperatures", json!([1.0, -2.0]))),
        ("block_rows 0", ErrorKind::Corrupt, set("block_rows", json!(0))),
        (
            "class_prior of the wrong length",
            ErrorKind::Corrupt,
            Box::new(|d: &Path| {
                edit_manifest(d, |m| {
                    m["stats"]["class_prior"].as_array_mut().unwrap().pop();
                })
            }),
        ),
        ("shards not a list", ErrorKind::Corrupt, set("shards", json!({}))),
    ];
    for (name, kind, f) in &cases {
        let (d, _) = check(t.path(), name, false, f, &Expect::err(*kind).at(Stage::Open).naming(["manifest.json"]));
        // Manifest::load agrees with CacheReader::open
        judge(at_open(kdcache::format::Manifest::load(&d.path().join("_manifest.json"))), &Expect::err(*kind), name);
    }
    let newer = Expect::err(ErrorKind::Version).at(Stage::Open).naming(["format version 7 is newer", "(4)"]);
    check(t.path(), "newer", false, manifest_json(|m| m["format_version"] = json!(7)), &newer);
}

#[test]
fn checksums_and_sizes() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        let cases: Vec<(&str, Option<Stage>, JsonEdit)> = vec![
            (
                "wrong xxh3",
                Some(Stage::Verify),
                Box::new(|m| {
                    let h = u64::from_str_radix(m["shards"][1]["xxh3"].as_str().unwrap(), 16).unwrap();
                    m["shards"][1]["xxh3"] = json!(format!("{:016x}", h ^ 1));
                }),
            ),
            // the schema wants lower case; either open or verify may refuse it
            (
                "xxh3 in upper case",
                None,
                Box::new(|m| {
                    let h = m["shards"][1]["xxh3"].as_str().unwrap().to_uppercase();
                    m["shards"][1]["xxh3"] = json!(if h.chars().any(|c| c.is_ascii_alphabetic()) { h } else { "A".repeat(16) });
                }),
            ),
            ("xxh3 not hex", Some(Stage::Open), Box::new(|m| m["shards"][1]["xxh3"] = json!("zzzzzzzzzzzzzzzz"))),
            ("xxh3 too short", Some(Stage::Open), Box::new(|m| m["shards"][1]["xxh3"] = json!("0123"))),
            (
                "bytes + 1",
                Some(Stage::Verify),
                Box::new(|m| {
                    let b = m["shards"][1]["bytes"].as_u64().unwrap();
                    m["shards"][1]["bytes"] = json!(b + 1);
                }),
            ),
            ("bytes 0", Some(Stage::Verify), Box::new(|m| m["shards"][1]["bytes"] = json!(0))),
        ];
        for (name, stage, f) in &cases {
            let mut want = Expect::err(ErrorKind::Corrupt).at(*stage);
            if *stage == Some(Stage::Verify) {
                want = want.naming(["shard-00001"]);
            }
            check(t.path(), &format!("{enc:?}: {name}"), false, manifest_json(f), &want);
        }
    }
}

#[test]
fn shards_must_tile_the_rows() {
    for enc in ENCODINGS {
        let (t, _) = base(enc);
        let add = |v: &Value, d: i64| json!(v.as_u64().unwrap() as i64 + d);
        let cases: Vec<(&str, JsonEdit)> = vec![
            ("gap between shards", Box::new(move |m| m["shards"][1]["first_row"] = add(&m["shards"][1]["first_row"], 1))),
            ("overlapping shards", Box::new(move |m| m["shards"][1]["first_row"] = add(&m["shards"][1]["first_row"], -1))),
            ("first shard not at 0", Box::new(|m| m["shards"][0]["first_row"] = json!(1))),
            ("rows more than the shards", Box::new(move |m| m["rows"] = add(&m["rows"], 1))),
            ("rows fewer than the shards", Box::new(move |m| m["rows"] = add(&m["rows"], -1))),
            ("shards out of order", Box::new(|m| m["shards"].as_array_mut().unwrap().swap(0, 1))),
            (
                "an empty shard",
                Box::new(|m| {
                    let mut s = m["shards"][2].clone();
                    s["first_row"] = json!(300);
                    s["rows"] = json!(0);
                    m["shards"].as_array_mut().unwrap().push(s);
                }),
            ),
            (
                "a shard dropped",
                Box::new(|m| {
                    m["shards"].as_array_mut().unwrap().pop();
                }),
            ),
            // tiles 0..300, but the shards hold other row counts than the manifest says
            (
                "rows moved between shards",
                Box::new(move |m| {
                    m["shards"][0]["rows"] = add(&m["shards"][0]["rows"], -1);
                    m["shards"][1]["first_row"] = add(&m["shards"][1]["first_row"], -1);
                    m["shards"][1]["rows"] = add(&m["shards"][1]["rows"], 1);
                }),
            ),
            (
                "row count overflows",
                Box::new(|m| {
                    m["shards"][2]["rows"] = json!(u64::MAX);
                    m["rows"] = json!(u64::MAX);
                }),
            ),
        ];
        let want = Expect::err(ErrorKind::Corrupt).at(Stage::Open);
        for (name, f) in &cases {
            check(t.path(), &format!("{enc:?}: {name}"), false, manifest_json(f), &want);
        }
    }
}

#[test]
fn file_names_stay_in_the_directory() {
    let (t, _) = base(Encoding::Kds);
    // a real file outside the cache directory, which a path-traversing reader would open
    let outside = t.path().parent().unwrap().join(format!("x-{}", std::process::id()));
    let names =
        ["../x", "..", ".", "../shard-00000.kds", "sub/shard-00000.kds", "/etc/passwd", "", ".hidden", "a\\b", "shard-00000.kds\0", "shärd.kds", "x y.kds"];
    let want = Expect::err(ErrorKind::Corrupt).at(Stage::Open).naming(["bad file name"]);
    for name in names {
        check(t.path(), &format!("file name {name:?}"), false, manifest_json(|m| m["shards"][0]["file"] = json!(name)), &want);
    }
    assert!(!outside.exists());
    // a good name that does not exist
    let want = Expect::err(ErrorKind::Io).at(Stage::Open).naming(["shard-99999.kds"]);
    check(t.path(), "nonexistent shard name", false, manifest_json(|m| m["shards"][0]["file"] = json!("shard-99999.kds")), &want);
}
