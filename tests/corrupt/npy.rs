//! Damaged and unsupported `.npy` files: `MappedArray::open_npy` must refuse each with the right kind, naming the file.
use kdcache::data::array::{self, ArrayDtype, MappedArray};

use crate::damage::*;

#[test]
fn npy_rejects() {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good.npy");
    let v: Vec<f32> = (0..24).map(|x| x as f32).collect();
    array::write_npy(&good, ArrayDtype::F32, &[4, 6], bytemuck::cast_slice(&v)).unwrap();
    let g = std::fs::read(&good).unwrap();
    let header_end = 10 + u16::from_le_bytes([g[8], g[9]]) as usize;
    let header = String::from_utf8(g[10..header_end].to_vec()).unwrap();
    // a file with `header` replaced (the data still 64-byte aligned), and `data` after it
    let with_header = |h: &str, data: &[u8]| npy_bytes(1, h, 64, 0, data);
    let data = &g[header_end..];
    let cases: Vec<(&str, ErrorKind, Vec<u8>)> = vec![
        ("complex64", ErrorKind::Invalid, with_header(&header.replace("<f4", "<c8"), &[data, data].concat())),
        ("big-endian float32", ErrorKind::Invalid, with_header(&header.replace("<f4", ">f4"), data)),
        ("bool", ErrorKind::Invalid, with_header(&header.replace("<f4", "|b1"), &data[..24])),
        ("unicode strings", ErrorKind::Invalid, with_header(&header.replace("<f4", "<U1"), data)),
        ("Fortran order", ErrorKind::Invalid, with_header(&header.replace("False", "True"), data)),
        ("truncated data", ErrorKind::Corrupt, g[..g.len() - 1].to_vec()),
        ("half the data", ErrorKind::Corrupt, g[..header_end + data.len() / 2].to_vec()),
        ("no data", ErrorKind::Corrupt, g[..header_end].to_vec()),
        ("trailing bytes", ErrorKind::Corrupt, [&g[..], &[0u8; 4]].concat()),
        ("truncated header", ErrorKind::Corrupt, g[..header_end - 10].to_vec()),
        ("bad magic", ErrorKind::Corrupt, [b"\x93NUMPZ", &g[6..]].concat()),
        ("version 9", ErrorKind::Corrupt, [&g[..6], &[9u8], &g[7..]].concat()),
        ("version 2, too short", ErrorKind::Corrupt, b"\x93NUMPY\x02\x00\x10\x00".to_vec()),
        ("tiny", ErrorKind::Corrupt, b"\x93NUMPY".to_vec()),
        ("empty", ErrorKind::Corrupt, vec![]),
        ("header length beyond the file", ErrorKind::Corrupt, [&g[..8], &[0xff, 0xff], &g[10..]].concat()),
        ("header not UTF-8", ErrorKind::Corrupt, {
            let mut b = g.clone();
            b[12] = 0xff;
            b
        }),
        ("no shape", ErrorKind::Corrupt, with_header(&header.replace("'shape'", "'shapf'"), data)),
        ("no descr", ErrorKind::Corrupt, with_header(&header.replace("'descr'", "'desc'"), data)),
        ("shape not a tuple", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "[4, 6]"), data)),
        ("negative dimension", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "(-4, 6)"), data)),
        ("shape overflows", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "(4294967296, 4294967296, 4)"), data)),
        ("shape larger than the data", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "(5, 6)"), data)),
        ("shape smaller than the data", ErrorKind::Corrupt, with_header(&header.replace("(4, 6)", "(4, 5)"), data)),
        // a version-2 header whose length puts the data at an offset that is not a multiple of 4
        ("misaligned data", ErrorKind::Corrupt, npy_bytes(2, &header, 4, 1, data)),
    ];
    let p = t.path().join("case.npy");
    for (name, kind, bytes) in &cases {
        std::fs::write(&p, bytes).unwrap();
        let case = format!("npy {name}");
        judge(no_panic(&case, || at_open(MappedArray::open_npy(&p))), &Expect::err(*kind).naming(["case.npy"]), &case);
    }
    // the rank is the caller's business: MappedArray::open reports it, import refuses the wrong one
    for (shape, n) in [(vec![], 1usize), (vec![24], 24), (vec![2, 3, 4], 24), (vec![0, 5], 0)] {
        let p = t.path().join("rank.npy");
        array::write_npy(&p, ArrayDtype::F32, &shape, bytemuck::cast_slice(&v[..n])).unwrap();
        let a = MappedArray::open_npy(&p).unwrap();
        assert_eq!(a.shape, shape);
        assert_eq!(a.data().len(), n * 4);
    }
    let p = t.path().join("missing.npy");
    assert_eq!(MappedArray::open_npy(&p).err().unwrap().kind(), ErrorKind::Io);
    assert_eq!(MappedArray::open_npy(t.path()).err().map(|e| e.kind()), Some(ErrorKind::Io), "a directory");
}
