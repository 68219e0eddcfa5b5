//! The `kds` shard: zstd-compressed, byte-shuffled column blocks with a checksummed footer index,
//! read through memmap2. Byte layout: `schemas/FORMAT.md`. Every length and offset read from the file
//! is checked before it is used.
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, IoContext, Result};
use crate::format::columns::{Col, col_bytes, col_set_shuffled, columns, shuffle};
use crate::format::rows::{LogitDtype, RowBatch, RowSpec};

pub const MAGIC: &[u8; 4] = b"KDS\0";
pub const END_MAGIC: &[u8; 8] = b"KDSFOOT1";
pub const VERSION: u32 = 1;
const MAX_JSON: u64 = 16 << 20;
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    columns: Vec<String>,
    k: usize,
    t: usize,
    m: usize,
    aug_dim: usize,
    logit_dtype: LogitDtype,
    rows: u64,
    block_rows: usize,
}

impl Header {
    /// The header a shard of `rows` rows in blocks of `block_rows` has for `spec`.
    fn of(spec: &RowSpec, rows: u64, block_rows: usize) -> Self {
        Header {
            columns: columns(spec).iter().map(|c| c.name().to_string()).collect(),
            k: spec.k,
            t: spec.t(),
            m: spec.tail_samples,
            aug_dim: spec.aug_dim,
            logit_dtype: spec.logit_dtype,
            rows,
            block_rows,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkInfo {
    offset: u64,
    len: u64,
    raw_len: u64,
    xxh3: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BlockInfo {
    rows: usize,
    columns: Vec<ChunkInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Footer {
    blocks: Vec<BlockInfo>,
}

/// Writes `batch` as one kds shard at `path` (directly; the caller handles temp names).
/// Returns the file's size and XXH3-64. Blocks are compressed in parallel.
pub fn write(path: &Path, spec: &RowSpec, batch: &RowBatch, block_rows: usize) -> Result<(u64, u64)> {
    batch.check_lengths()?;
    let cols = columns(spec);
    let n = batch.len();
    let header = Header::of(spec, n as u64, block_rows);
    let hjson = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
    let nblocks = n.div_ceil(block_rows);
    let jobs: Vec<(usize, usize)> = (0..nblocks).flat_map(|b| (0..cols.len()).map(move |c| (b, c))).collect();
    let chunks: Vec<(Vec<u8>, u64)> = jobs
        .par_iter()
        .map(|&(b, c)| {
            let (w, per) = cols[c].shape(spec);
            let (r0, r1) = (b * block_rows, ((b + 1) * block_rows).min(n));
            let raw = &col_bytes(batch, cols[c])[r0 * per * w..r1 * per * w];
            let mut sh = Vec::new();
            shuffle(raw, w, &mut sh);
            let z = zstd::bulk::compress(&sh, ZSTD_LEVEL).map_err(|e| Error::Internal(format!("zstd: {e}")))?;
            Ok((z, raw.len() as u64))
        })
        .collect::<Result<_>>()?;

    let file = std::fs::File::create(path).ctx(path)?;
    let mut out = crate::fsio::HashWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    out.write_all(MAGIC).ctx(path)?;
    out.write_all(&VERSION.to_le_bytes()).ctx(path)?;
    out.write_all(&(hjson.len() as u64).to_le_bytes()).ctx(path)?;
    out.write_all(&hjson).ctx(path)?;
    let mut footer = Footer { blocks: Vec::with_capacity(nblocks) };
    for b in 0..nblocks {
        let rows = ((b + 1) * block_rows).min(n) - b * block_rows;
        let mut info = BlockInfo { rows, columns: vec![] };
        for c in 0..cols.len() {
            let (z, raw_len) = &chunks[b * cols.len() + c];
            info.columns.push(ChunkInfo { offset: out.n, len: z.len() as u64, raw_len: *raw_len, xxh3: xxh3_64(z) });
            out.write_all(z).ctx(path)?;
        }
        footer.blocks.push(info);
    }
    let fjson = serde_json::to_vec(&footer).map_err(|e| Error::Internal(e.to_string()))?;
    out.write_all(&fjson).ctx(path)?;
    out.write_all(&(fjson.len() as u64).to_le_bytes()).ctx(path)?;
    out.write_all(&xxh3_64(&fjson).to_le_bytes()).ctx(path)?;
    out.write_all(END_MAGIC).ctx(path)?;
    let (size, hash) = (out.n, out.digest());
    let file = out.w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().ctx(path)?;
    Ok((size, hash))
}

/// An open kds shard: the mapped file and its validated index.
pub struct KdsShard {
    path: PathBuf,
    map: memmap2::Mmap,
    spec: RowSpec,
    cols: Vec<Col>,
    footer: Footer,
    block_rows: usize,
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

impl KdsShard {
    /// Maps and validates a shard against the `spec` and row count the manifest declares.
    pub fn open(path: &Path, spec: &RowSpec, rows: u64) -> Result<Self> {
        let file = std::fs::File::open(path).ctx(path)?;
        // SAFETY: the cache's files are written once and then only read; a concurrent writer would
        // violate the cache's contract, and checksums catch the content changing under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.ctx(path)?;
        Self::from_map(path, map, spec, rows)
    }

    fn from_map(path: &Path, map: memmap2::Mmap, spec: &RowSpec, rows: u64) -> Result<Self> {
        let bad = |what: String| Error::corrupt(path, None, what);
        let len = map.len() as u64;
        if len < 16 + 24 {
            return Err(bad(format!("file of {len} bytes is too short for a kds shard")));
        }
        if &map[0..4] != MAGIC {
            return Err(bad("not a kds shard (bad magic)".into()));
        }
        let version = u32::from_le_bytes(map[4..8].try_into().expect("4 bytes"));
        if version > VERSION {
            return Err(Error::Version { path: path.into(), found: version as u64, supported: VERSION as u64 });
        }
        if version == 0 {
            return Err(bad("kds version 0 is not valid".into()));
        }
        let hlen = le_u64(&map[8..16]);
        if hlen > MAX_JSON || 16 + hlen > len - 24 {
            return Err(bad(format!("header length {hlen} does not fit the file ({len} bytes)")));
        }
        let data_start = 16 + hlen;
        let header: Header = serde_json::from_slice(&map[16..data_start as usize]).map_err(|e| bad(format!("header is not valid: {e}")))?;
        let tail = &map[(len - 24) as usize..];
        if &tail[16..24] != END_MAGIC {
            return Err(bad("truncated or damaged: end magic missing".into()));
        }
        let flen = le_u64(&tail[0..8]);
        let fhash = le_u64(&tail[8..16]);
        if flen > MAX_JSON || flen > len - 24 - data_start {
            return Err(bad(format!("footer length {flen} does not fit the file")));
        }
        let footer_start = len - 24 - flen;
        let fbytes = &map[footer_start as usize..(len - 24) as usize];
        if xxh3_64(fbytes) != fhash {
            return Err(bad("footer checksum mismatch".into()));
        }
        let footer: Footer = serde_json::from_slice(fbytes).map_err(|e| bad(format!("footer is not valid: {e}")))?;

        let cols = columns(spec);
        let expect = Header::of(spec, rows, header.block_rows);
        if header != expect {
            return Err(bad(format!("shard header {header:?} disagrees with the manifest (expected {expect:?})")));
        }
        if header.block_rows == 0 || header.block_rows > 1 << 24 {
            return Err(bad(format!("block_rows = {} is out of range", header.block_rows)));
        }
        // the blocks' column chunks must tile [data_start, footer_start) exactly and in order
        let mut pos = data_start;
        let mut total = 0u64;
        for (bi, b) in footer.blocks.iter().enumerate() {
            let at = || Some(format!("block {bi}"));
            if b.rows == 0 || b.rows > header.block_rows {
                return Err(Error::corrupt(path, at(), format!("{} rows (block_rows {})", b.rows, header.block_rows)));
            }
            if b.columns.len() != cols.len() {
                return Err(Error::corrupt(path, at(), format!("{} column chunks, expected {}", b.columns.len(), cols.len())));
            }
            for (ci, c) in b.columns.iter().enumerate() {
                let (w, per) = cols[ci].shape(spec);
                if c.offset != pos || c.len > footer_start - pos {
                    return Err(Error::corrupt(path, at(), format!("column {} chunk at {}+{} breaks the layout", cols[ci].name(), c.offset, c.len)));
                }
                if c.raw_len != (b.rows * w * per) as u64 {
                    return Err(Error::corrupt(path, at(), format!("column {} raw length {} != {}", cols[ci].name(), c.raw_len, b.rows * w * per)));
                }
                pos += c.len;
            }
            total += b.rows as u64;
        }
        if pos != footer_start {
            return Err(bad(format!("{} unindexed bytes between the last block and the footer", footer_start - pos)));
        }
        if total != rows {
            return Err(bad(format!("blocks hold {total} rows, manifest says {rows}")));
        }
        Ok(KdsShard { path: path.into(), map, spec: spec.clone(), cols, block_rows: header.block_rows, footer })
    }

    pub fn num_blocks(&self) -> usize {
        self.footer.blocks.len()
    }
    pub fn block_len(&self, b: usize) -> usize {
        self.footer.blocks[b].rows
    }
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }

    /// Decodes block `b`, checking each chunk's checksum and decompressed length.
    pub fn read_block(&self, b: usize) -> Result<RowBatch> {
        let mut out = RowBatch::new(&self.spec);
        // one zstd context and one scratch buffer per thread, kept across blocks: a fresh 16 MiB buffer
        // per column chunk cost more in page faults and zeroing than the decompression itself
        thread_local!(static SCRATCH: std::cell::RefCell<Option<(zstd::bulk::Decompressor<'static>, Vec<u8>)>> = const { std::cell::RefCell::new(None) });
        SCRATCH.with_borrow_mut(|slot| {
            if slot.is_none() {
                *slot = Some((zstd::bulk::Decompressor::new().map_err(|e| Error::Internal(format!("zstd: {e}")))?, Vec::new()));
            }
            let (dec, scratch) = slot.as_mut().expect("set above");
            self.decode_columns(b, &mut out, dec, scratch)
        })?;
        if self.cols.contains(&Col::Row) {
            out.check_lengths()?;
        }
        Ok(out)
    }

    fn decode_columns(&self, b: usize, out: &mut RowBatch, dec: &mut zstd::bulk::Decompressor<'static>, scratch: &mut Vec<u8>) -> Result<()> {
        let info = &self.footer.blocks[b];
        for (ci, c) in info.columns.iter().enumerate() {
            let col = self.cols[ci];
            let at = || Some(format!("block {b}, column {}", col.name()));
            let z = &self.map[c.offset as usize..(c.offset + c.len) as usize];
            if xxh3_64(z) != c.xxh3 {
                return Err(Error::corrupt(&self.path, at(), "checksum mismatch"));
            }
            let raw = c.raw_len as usize; // rows × width × values per row, checked at open
            if scratch.len() < raw {
                scratch.resize(raw, 0); // grows once per thread, never zeroed again
            }
            let got = dec.decompress_to_buffer(z, &mut scratch[..raw]).map_err(|e| Error::corrupt(&self.path, at(), format!("zstd: {e}")))?;
            if got != raw {
                return Err(Error::corrupt(&self.path, at(), format!("decompressed to {got} bytes, expected {raw}")));
            }
            col_set_shuffled(out, col, &scratch[..raw]);
        }
        Ok(())
    }
}
