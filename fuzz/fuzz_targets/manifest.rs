//! `manifest.json` of hostile bytes: `Manifest::load` must refuse it as Corrupt or Version, or accept a
//! manifest that validates and survives a store and reload.
#![no_main]
use kdcache::ErrorKind;
use kdcache::format::Manifest;
use kdcache_fuzz::{check_kind, input_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = input_file("manifest.json", data);
    match Manifest::load(&path) {
        Err(e) => check_kind(&e, &[ErrorKind::Corrupt, ErrorKind::Version], &path),
        Ok(m) => {
            m.validate().expect("a loaded manifest validates");
            m.spec().validate().expect("a loaded manifest has a valid row shape");
            assert!(m.shards.iter().all(|s| !s.file.contains('/') && !s.file.contains('\\') && !s.file.starts_with('.')));
            let again = path.with_file_name("manifest.stored.json");
            m.store(&again).expect("store");
            let m2 = Manifest::load(&again).unwrap_or_else(|e| panic!("a stored manifest does not load again: {e}"));
            // (floats may move by an ulp through JSON; the structure may not)
            assert_eq!(
                (&m2.shards, m2.rows, m2.encoding, m2.classes, m2.top_k, m2.format_version),
                (&m.shards, m.rows, m.encoding, m.classes, m.top_k, m.format_version)
            );
        }
    }
});
