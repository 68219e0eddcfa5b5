//! Input arrays, memory-mapped: `.npy` files (NumPy format 1.0–3.0) and tensors of `.safetensors` files.
//! Headers are parsed as hostile input.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayDtype {
    F64,
    F32,
    F16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
}

impl ArrayDtype {
    pub fn width(self) -> usize {
        match self {
            ArrayDtype::F64 | ArrayDtype::I64 | ArrayDtype::U64 => 8,
            ArrayDtype::F32 | ArrayDtype::I32 | ArrayDtype::U32 => 4,
            ArrayDtype::F16 | ArrayDtype::I16 | ArrayDtype::U16 => 2,
            ArrayDtype::I8 | ArrayDtype::U8 => 1,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, ArrayDtype::F64 | ArrayDtype::F32 | ArrayDtype::F16)
    }
    fn descr(self) -> &'static str {
        match self {
            ArrayDtype::F64 => "<f8",
            ArrayDtype::F32 => "<f4",
            ArrayDtype::F16 => "<f2",
            ArrayDtype::I64 => "<i8",
            ArrayDtype::I32 => "<i4",
            ArrayDtype::I16 => "<i2",
            ArrayDtype::I8 => "|i1",
            ArrayDtype::U64 => "<u8",
            ArrayDtype::U32 => "<u4",
            ArrayDtype::U16 => "<u2",
            ArrayDtype::U8 => "|u1",
        }
    }
    fn from_descr(d: &str) -> Option<Self> {
        // one-byte types are written '|i1' by NumPy; '<' and '=' are accepted for them too
        let d = match d {
            "|i1" | "<i1" | "=i1" => "|i1",
            "|u1" | "<u1" | "=u1" => "|u1",
            d => d,
        };
        [Self::F64, Self::F32, Self::F16, Self::I64, Self::I32, Self::I16, Self::I8, Self::U64, Self::U32, Self::U16, Self::U8]
            .into_iter()
            .find(|t| t.descr() == d)
    }
    /// NumPy's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            ArrayDtype::F64 => "float64",
            ArrayDtype::F32 => "float32",
            ArrayDtype::F16 => "float16",
            ArrayDtype::I64 => "int64",
            ArrayDtype::I32 => "int32",
            ArrayDtype::I16 => "int16",
            ArrayDtype::I8 => "int8",
            ArrayDtype::U64 => "uint64",
            ArrayDtype::U32 => "uint32",
            ArrayDtype::U16 => "uint16",
            ArrayDtype::U8 => "uint8",
        }
    }
}

/// A mapped array (a `.npy` file or one tensor of a `.safetensors` file): C-order, little-endian, one of
/// [`ArrayDtype`].
pub struct MappedArray {
    pub path: PathBuf,
    pub dtype: ArrayDtype,
    pub shape: Vec<usize>,
    map: memmap2::Mmap,
    offset: usize,
    end: usize,
}

const MAX_HEADER: usize = 1 << 20;

/// The element count of `shape`, or None when it (or the size of one row, which a zero-row array
/// does not bound) overflows.
fn elements(shape: &[usize]) -> Option<usize> {
    let mul = |a: usize, &d: &usize| a.checked_mul(d);
    shape.iter().skip(1).try_fold(1usize, mul)?;
    shape.iter().try_fold(1usize, mul)
}

impl MappedArray {
    /// A `.npy` file.
    pub fn open_npy(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).ctx(path)?;
        let len = f.metadata().ctx(path)?.len() as usize;
        let bad = |w: String| Error::corrupt(path, None, format!("not a usable .npy file: {w}"));
        if len < 10 {
            return Err(bad(format!("only {len} bytes")));
        }
        // SAFETY: input files are only read; see KdsShard::open.
        let map = unsafe { memmap2::Mmap::map(&f) }.ctx(path)?;
        if &map[0..6] != b"\x93NUMPY" {
            return Err(bad("bad magic".into()));
        }
        let (hlen, start) = match map[6] {
            1 => (u16::from_le_bytes([map[8], map[9]]) as usize, 10),
            2 | 3 if len >= 12 => (u32::from_le_bytes(map[8..12].try_into().expect("4")) as usize, 12),
            v => return Err(bad(format!("unsupported version {v}"))),
        };
        if hlen > MAX_HEADER || start + hlen > len {
            return Err(bad(format!("header length {hlen} does not fit")));
        }
        let header = std::str::from_utf8(&map[start..start + hlen]).map_err(|_| bad("header is not text".into()))?;
        let descr = dict_value(header, "descr").ok_or_else(|| bad("no 'descr'".into()))?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let dtype = ArrayDtype::from_descr(descr).ok_or_else(|| {
            Error::invalid(format!("{}: dtype {descr:?} is not supported (want a little-endian float64/32/16 or integer array)", path.display()))
        })?;
        let fortran = dict_value(header, "fortran_order").ok_or_else(|| bad("no 'fortran_order'".into()))?;
        if fortran.trim() != "False" {
            return Err(Error::invalid(format!("{}: Fortran-order arrays are not supported; save with np.ascontiguousarray", path.display())));
        }
        let shape_s = dict_value(header, "shape").ok_or_else(|| bad("no 'shape'".into()))?;
        let inner = shape_s.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| bad(format!("shape {shape_s:?}")))?;
        let shape: Vec<usize> = inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|_| bad(format!("shape {shape_s:?}"))))
            .collect::<Result<_>>()?;
        let count = elements(&shape).ok_or_else(|| bad("shape overflows".into()))?;
        let offset = start + hlen;
        let need = count.checked_mul(dtype.width()).ok_or_else(|| bad("shape overflows".into()))?;
        if len - offset != need {
            return Err(bad(format!("data holds {} bytes, shape {shape:?} needs {need} (truncated or trailing bytes)", len - offset)));
        }
        if offset % dtype.width() != 0 {
            return Err(bad("data is not aligned".into()));
        }
        let end = map.len();
        Ok(MappedArray { path: path.into(), dtype, shape, map, offset, end })
    }

    pub fn data(&self) -> &[u8] {
        &self.map[self.offset..self.end]
    }

    /// Rows of a rank-≥1 array as f32 values (f16, f64 and integers converted; integers unscaled, so
    /// uint8 pixels read as 0.0 ..= 255.0).
    pub fn f32_rows(&self, rows: std::ops::Range<usize>, out: &mut Vec<f32>) {
        let per: usize = self.shape[1..].iter().product();
        let w = self.dtype.width();
        let d = &self.data()[rows.start * per * w..rows.end * per * w];
        out.clear();
        match self.dtype {
            ArrayDtype::F32 => out.extend_from_slice(bytemuck::cast_slice(d)),
            ArrayDtype::F16 => {
                let h: &[half::f16] = bytemuck::cast_slice(d);
                out.resize(h.len(), 0.0);
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(h, out);
            }
            ArrayDtype::F64 => out.extend(bytemuck::cast_slice::<u8, f64>(d).iter().map(|&v| v as f32)),
            ArrayDtype::U8 => out.extend(d.iter().map(|&v| v as f32)),
            ArrayDtype::I8 => out.extend(d.iter().map(|&v| v as i8 as f32)),
            ArrayDtype::U16 => out.extend(bytemuck::cast_slice::<u8, u16>(d).iter().map(|&v| v as f32)),
            ArrayDtype::I16 => out.extend(bytemuck::cast_slice::<u8, i16>(d).iter().map(|&v| v as f32)),
            ArrayDtype::U32 => out.extend(bytemuck::cast_slice::<u8, u32>(d).iter().map(|&v| v as f32)),
            ArrayDtype::I32 => out.extend(bytemuck::cast_slice::<u8, i32>(d).iter().map(|&v| v as f32)),
            ArrayDtype::U64 => out.extend(bytemuck::cast_slice::<u8, u64>(d).iter().map(|&v| v as f32)),
            ArrayDtype::I64 => out.extend(bytemuck::cast_slice::<u8, i64>(d).iter().map(|&v| v as f32)),
        }
    }

    /// `xxh3:…` of the array's values as [`MappedArray::f32_rows`] reads them (little-endian f32), so a
    /// float32 copy and a float64 or integer copy of the same values share it; for a float32 array it
    /// is the hash of the stored bytes. Streamed in blocks of rows.
    pub fn f32_fingerprint(&self) -> String {
        if self.dtype == ArrayDtype::F32 || self.shape.is_empty() {
            return crate::fingerprint::bytes(self.data());
        }
        let per: usize = self.shape[1..].iter().product::<usize>().max(1);
        let step = (1 << 20) / per + 1;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![];
        for lo in (0..self.shape[0]).step_by(step) {
            self.f32_rows(lo..(lo + step).min(self.shape[0]), &mut buf);
            h.update(bytemuck::cast_slice(&buf));
        }
        format!("xxh3:{:016x}", h.digest())
    }

    /// All values of an integer array as i64 (u64 values above i64::MAX saturate).
    pub fn i64_values(&self) -> Vec<i64> {
        let d = self.data();
        match self.dtype {
            ArrayDtype::I64 => bytemuck::cast_slice::<u8, i64>(d).to_vec(),
            ArrayDtype::I32 => bytemuck::cast_slice::<u8, i32>(d).iter().map(|&v| v as i64).collect(),
            ArrayDtype::I16 => bytemuck::cast_slice::<u8, i16>(d).iter().map(|&v| v as i64).collect(),
            ArrayDtype::I8 => d.iter().map(|&v| v as i8 as i64).collect(),
            ArrayDtype::U64 => bytemuck::cast_slice::<u8, u64>(d).iter().map(|&v| v.min(i64::MAX as u64) as i64).collect(),
            ArrayDtype::U32 => bytemuck::cast_slice::<u8, u32>(d).iter().map(|&v| v as i64).collect(),
            ArrayDtype::U16 => bytemuck::cast_slice::<u8, u16>(d).iter().map(|&v| v as i64).collect(),
            ArrayDtype::U8 => d.iter().map(|&v| v as i64).collect(),
            _ => unreachable!("i64_values on a float array"),
        }
    }
}

fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let k1 = format!("'{key}'");
    let at = header.find(&k1)? + k1.len();
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
    Some(&rest[..end])
}

/// Writes a C-order little-endian `.npy` (version 1.0) atomically.
pub fn write_npy(path: &Path, dtype: ArrayDtype, shape: &[usize], data: &[u8]) -> Result<()> {
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut h = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape_s}, }}", dtype.descr());
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut bytes = Vec::with_capacity(10 + h.len() + data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    bytes.write_all(data).ctx(path)?;
    crate::fsio::write_atomic(path, &bytes)
}

impl MappedArray {
    /// One tensor of a `.safetensors` file, viewed like a `.npy` array (F32, F16, I64 or I32).
    pub fn open_safetensors(path: &Path, key: &str) -> Result<Self> {
        let f = std::fs::File::open(path).ctx(path)?;
        // SAFETY: input files are only read; see KdsShard::open.
        let map = unsafe { memmap2::Mmap::map(&f) }.ctx(path)?;
        let (hlen, meta) =
            safetensors::SafeTensors::read_metadata(&map[..]).map_err(|e| Error::corrupt(path, None, format!("not a usable .safetensors file: {e}")))?;
        let info = meta.info(key).ok_or_else(|| Error::invalid(format!("{}: no tensor named {key:?}", path.display())))?;
        let dtype = match info.dtype {
            safetensors::Dtype::F64 => ArrayDtype::F64,
            safetensors::Dtype::F32 => ArrayDtype::F32,
            safetensors::Dtype::F16 => ArrayDtype::F16,
            safetensors::Dtype::I64 => ArrayDtype::I64,
            safetensors::Dtype::I32 => ArrayDtype::I32,
            safetensors::Dtype::I16 => ArrayDtype::I16,
            safetensors::Dtype::I8 => ArrayDtype::I8,
            safetensors::Dtype::U64 => ArrayDtype::U64,
            safetensors::Dtype::U32 => ArrayDtype::U32,
            safetensors::Dtype::U16 => ArrayDtype::U16,
            safetensors::Dtype::U8 => ArrayDtype::U8,
            d => return Err(Error::invalid(format!("{}: tensor {key:?} has dtype {d:?}; want a float (F64, F32, F16) or integer type", path.display()))),
        };
        let (a, b) = info.data_offsets;
        let offset = 8 + hlen + a;
        let count = elements(&info.shape);
        if b < a || 8 + hlen + b > map.len() || count.and_then(|c| c.checked_mul(dtype.width())) != Some(b - a) || offset % dtype.width() != 0 {
            return Err(Error::corrupt(path, None, format!("tensor {key:?} has inconsistent offsets or shape")));
        }
        // an array whose data is the tensor's byte range
        Ok(MappedArray { path: path.into(), dtype, shape: info.shape.clone(), map, offset, end: 8 + hlen + b })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_reads_back() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a.npy");
        let f: Vec<f64> = vec![1.5, -2.25, 3.0, 1e-3];
        write_npy(&p, ArrayDtype::F64, &[2, 2], bytemuck::cast_slice(&f)).unwrap();
        let a = MappedArray::open_npy(&p).unwrap();
        let mut out = vec![];
        a.f32_rows(1..2, &mut out);
        assert_eq!(out, vec![3.0, 1e-3f32]);
        let labels: Vec<i64> = vec![-1, 0, 7, 120];
        let cases: Vec<(ArrayDtype, Vec<u8>)> = vec![
            (ArrayDtype::I8, labels.iter().map(|&v| v as i8 as u8).collect()),
            (ArrayDtype::I16, labels.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect()),
            (ArrayDtype::I32, labels.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect()),
            (ArrayDtype::I64, labels.iter().flat_map(|&v| v.to_le_bytes()).collect()),
        ];
        for (dt, bytes) in cases {
            write_npy(&p, dt, &[4], &bytes).unwrap();
            assert_eq!(MappedArray::open_npy(&p).unwrap().i64_values(), labels, "{dt:?}");
        }
        let unsigned: Vec<u8> = [0u16, 7, 65535, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&p, ArrayDtype::U16, &[4], &unsigned).unwrap();
        assert_eq!(MappedArray::open_npy(&p).unwrap().i64_values(), vec![0, 7, 65535, 3]);
        write_npy(&p, ArrayDtype::U64, &[1], &u64::MAX.to_le_bytes()).unwrap();
        assert_eq!(MappedArray::open_npy(&p).unwrap().i64_values(), vec![i64::MAX], "u64 saturates, never wraps to -1");
    }
    /// The fingerprint is of the values as read: float32, float64 and uint8 copies of the same values share it.
    #[test]
    fn fingerprint_is_of_the_values() {
        let t = tempfile::tempdir().unwrap();
        let v: Vec<u8> = (0..3 * 70_000).map(|i| (i % 251) as u8).collect();
        let p = |n: &str| t.path().join(n);
        write_npy(&p("a.npy"), ArrayDtype::U8, &[3, 70_000], &v).unwrap();
        write_npy(&p("b.npy"), ArrayDtype::F32, &[3, 70_000], bytemuck::cast_slice(&v.iter().map(|&x| x as f32).collect::<Vec<_>>())).unwrap();
        write_npy(&p("c.npy"), ArrayDtype::F64, &[3, 70_000], bytemuck::cast_slice(&v.iter().map(|&x| x as f64).collect::<Vec<_>>())).unwrap();
        let fp = |n: &str| MappedArray::open_npy(&p(n)).unwrap().f32_fingerprint();
        assert_eq!(fp("a.npy"), fp("b.npy"));
        assert_eq!(fp("c.npy"), fp("b.npy"));
        assert_eq!(fp("b.npy"), crate::fingerprint::bytes(MappedArray::open_npy(&p("b.npy")).unwrap().data()), "float32: the stored bytes");
        write_npy(&p("d.npy"), ArrayDtype::F64, &[3, 70_000], bytemuck::cast_slice(&v.iter().map(|&x| x as f64 + 0.25).collect::<Vec<_>>())).unwrap();
        assert_ne!(fp("d.npy"), fp("b.npy"));
    }

    #[test]
    fn zero_rows_with_huge_row_size_is_refused() {
        assert_eq!(elements(&[0, 1 << 62, 8]), None);
        assert_eq!(elements(&[0, 3, 4]), Some(0));
        assert_eq!(elements(&[]), Some(1));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.npy");
        let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (0, {}, 4), }}", 1u64 << 63);
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        std::fs::write(&p, b).unwrap();
        assert_eq!(MappedArray::open_npy(&p).err().map(|e| e.kind()), Some(crate::ErrorKind::Corrupt));
    }
    #[test]
    fn roundtrip_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let v: Vec<f32> = (0..12).map(|x| x as f32).collect();
        write_npy(&p, ArrayDtype::F32, &[3, 4], bytemuck::cast_slice(&v)).unwrap();
        let a = MappedArray::open_npy(&p).unwrap();
        assert_eq!(a.shape, vec![3, 4]);
        let mut out = vec![];
        a.f32_rows(1..3, &mut out);
        assert_eq!(out, v[4..].to_vec());
        // truncated
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(MappedArray::open_npy(&p).is_err());
    }
}
