//! The Parquet shard: the same rows as kds, as Arrow `FixedSizeList` columns (schema:
//! `schemas/cache.arrow.json`), zstd, one row group per block. Readable by pyarrow, polars, DuckDB.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float16Array, Float32Array, Int64Array, PrimitiveArray, RecordBatch, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, Encoding as PqEncoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, IoContext, Result};
use crate::format::columns::{Col, columns};
use crate::format::rows::{LogitDtype, Logits, RowBatch, RowSpec};

fn list_field(name: &str, item: DataType, size: usize, meta: Option<(&str, &str)>) -> Field {
    let f = Field::new(name, DataType::FixedSizeList(Arc::new(Field::new("item", item, false)), size as i32), false);
    match meta {
        Some((k, v)) => f.with_metadata(HashMap::from([(k.to_string(), v.to_string())])),
        None => f,
    }
}

/// The Arrow schema of a cache row for `spec`.
pub fn arrow_schema(spec: &RowSpec) -> SchemaRef {
    let logit_item = match spec.logit_dtype {
        LogitDtype::F16 => DataType::Float16,
        LogitDtype::Bf16 => DataType::UInt16,
        LogitDtype::F32 => DataType::Float32,
    };
    let logit_meta = (spec.logit_dtype == LogitDtype::Bf16).then_some(("kdcache.dtype", "bf16"));
    let fields: Vec<Field> = columns(spec)
        .into_iter()
        .map(|c| match c {
            Col::Row => Field::new("row", DataType::UInt64, false),
            Col::View => Field::new("view", DataType::UInt32, false),
            Col::Label => Field::new("label", DataType::Int64, false),
            Col::TopkIdx => list_field("topk_idx", DataType::UInt32, spec.k, None),
            Col::TopkLogit => list_field("topk_logit", logit_item.clone(), spec.k, logit_meta),
            Col::Lse => list_field("lse", DataType::Float32, spec.t(), None),
            Col::LogTail => list_field("log_tail", DataType::Float32, spec.t(), None),
            Col::TailIdx => list_field("tail_idx", DataType::UInt32, spec.tail_samples, None),
            Col::TailCnt => list_field("tail_cnt", DataType::UInt32, spec.tail_samples, None),
            Col::TailLogit => list_field("tail_logit", logit_item.clone(), spec.tail_samples, logit_meta),
            Col::TopkLogitT => list_field("topk_logit_t", logit_item.clone(), spec.mixture_values(), logit_meta),
            Col::Aug => list_field("aug", DataType::Float32, spec.aug_dim, None),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn fsl(schema: &Schema, name: &str, values: ArrayRef) -> Result<ArrayRef> {
    let f = schema.field_with_name(name)?;
    let DataType::FixedSizeList(item, size) = f.data_type() else {
        return Err(Error::Internal(format!("{name} is not a list")));
    };
    Ok(Arc::new(FixedSizeListArray::try_new(item.clone(), *size, values, None)?))
}

fn logit_array(l: &Logits) -> ArrayRef {
    match l {
        Logits::F16(v) => Arc::new(Float16Array::from(v.clone())),
        Logits::Bf16(v) => Arc::new(UInt16Array::from(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())),
        Logits::F32(v) => Arc::new(Float32Array::from(v.clone())),
    }
}

/// Converts rows to an Arrow record batch.
pub fn to_record_batch(spec: &RowSpec, b: &RowBatch) -> Result<RecordBatch> {
    let schema = arrow_schema(spec);
    let mut arrays: Vec<ArrayRef> = vec![];
    for c in columns(spec) {
        let a: ArrayRef = match c {
            Col::Row => Arc::new(UInt64Array::from(b.row.clone())),
            Col::View => Arc::new(UInt32Array::from(b.view.clone())),
            Col::Label => Arc::new(Int64Array::from(b.label.clone())),
            Col::TopkIdx => fsl(&schema, "topk_idx", Arc::new(UInt32Array::from(b.topk_idx.clone())))?,
            Col::TopkLogit => fsl(&schema, "topk_logit", logit_array(&b.topk_logit))?,
            Col::TailLogit => fsl(&schema, "tail_logit", logit_array(&b.tail_logit))?,
            Col::TopkLogitT => fsl(&schema, "topk_logit_t", logit_array(&b.topk_logit_t))?,
            Col::Lse => fsl(&schema, "lse", Arc::new(Float32Array::from(b.lse.clone())))?,
            Col::LogTail => fsl(&schema, "log_tail", Arc::new(Float32Array::from(b.log_tail.clone())))?,
            Col::TailIdx => fsl(&schema, "tail_idx", Arc::new(UInt32Array::from(b.tail_idx.clone())))?,
            Col::TailCnt => fsl(&schema, "tail_cnt", Arc::new(UInt32Array::from(b.tail_cnt.clone())))?,
            Col::Aug => fsl(&schema, "aug", Arc::new(Float32Array::from(b.aug.clone())))?,
        };
        arrays.push(a);
    }
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// The byte range [start, end) of a column chunk, None when the footer gives negative or overflowing
/// offsets (the crate's own `byte_range` asserts on those).
fn chunk_range(c: &parquet::file::metadata::ColumnChunkMetaData) -> Option<(u64, u64)> {
    let start = u64::try_from(c.dictionary_page_offset().unwrap_or(c.data_page_offset())).ok()?;
    let len = u64::try_from(c.compressed_size()).ok()?;
    Some((start, start.checked_add(len)?))
}

/// The byte range [start, end) of a row group: its column chunks, which a writer lays out contiguously.
fn row_group_range(g: &parquet::file::metadata::RowGroupMetaData) -> Option<(u64, u64)> {
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    for c in g.columns() {
        let (s, e) = chunk_range(c)?;
        lo = lo.min(s);
        hi = hi.max(e);
    }
    (lo < hi).then_some((lo, hi))
}

/// Writes rows as one Parquet shard; returns the file's size, its XXH3-64 and each row group's XXH3-64.
pub fn write(path: &Path, spec: &RowSpec, batch: &RowBatch, block_rows: usize) -> Result<(u64, u64, Vec<u64>)> {
    batch.check_lengths()?;
    let schema = arrow_schema(spec);
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(block_rows))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_dictionary_enabled(false);
    // byte-stream-split lets zstd see the slowly varying high bytes of sorted logits and class ids; the
    // Parquet spec allows it for FIXED_LEN_BYTE_ARRAY, but DuckDB (1.x–2.x) reads it only for FLOAT,
    // DOUBLE, INT32 and INT64 columns, so float16 logits (FIXED_LEN_BYTE_ARRAY(2)) stay PLAIN
    let mut split = vec!["topk_idx"];
    if spec.logit_dtype != LogitDtype::F16 {
        split.push("topk_logit");
        if spec.has_tail_logit() {
            split.push("tail_logit");
        }
        if spec.mixture_values() > 0 {
            split.push("topk_logit_t");
        }
    }
    for name in split {
        props = props.set_column_encoding(ColumnPath::from(vec![name.into(), "list".into(), "item".into()]), PqEncoding::BYTE_STREAM_SPLIT);
    }
    let file = std::fs::File::create(path).ctx(path)?;
    let out = crate::fsio::HashWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let mut w = ArrowWriter::try_new(out, schema, Some(props.build()))?;
    for start in (0..batch.len()).step_by(block_rows.max(1)) {
        let part = batch.slice(start..(start + block_rows).min(batch.len()));
        w.write(&to_record_batch(spec, &part)?)?;
        w.flush()?; // closes the row group at the block boundary
    }
    let groups = w.flushed_row_groups().to_vec();
    let out = w.into_inner()?;
    let (size, hash) = (out.n, out.digest());
    let file = out.w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().ctx(path)?;
    // the row groups' hashes, from the file as written (still in the page cache)
    drop(file);
    let file = std::fs::File::open(path).ctx(path)?;
    // SAFETY: a file this function just wrote and nothing else writes; read-only map.
    let map = unsafe { memmap2::Mmap::map(&file) }.ctx(path)?;
    let mut blocks = vec![];
    for g in &groups {
        let (lo, hi) = row_group_range(g).filter(|r| r.1 <= map.len() as u64).ok_or_else(|| Error::Internal("a written row group has no byte range".into()))?;
        blocks.push(xxhash_rust::xxh3::xxh3_64(&map[lo as usize..hi as usize]));
    }
    Ok((size, hash, blocks))
}

thread_local!(static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });

/// True while this thread runs parquet-crate code under [`guarded`] (a panic hook can stay quiet then).
pub fn in_guard() -> bool {
    GUARDED.with(|g| g.get())
}

/// Installs a panic hook that keeps quiet about panics inside [`guarded`] parquet-crate code (they are
/// caught and reported as a corrupt file) and reports every other panic as before. For binaries.
pub fn quiet_guarded_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !in_guard() {
            default_hook(info)
        }
    }));
}

/// Runs parquet-crate decoding that can panic on damaged input (seen in its byte-stream-split decoder
/// and metadata parser), turning a panic into an error message.
fn guarded<R>(f: impl FnOnce() -> R) -> std::result::Result<R, String> {
    let was = GUARDED.with(|g| g.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    r.map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        format!("the Parquet decoder failed on damaged data: {msg}")
    })
}

/// An open Parquet shard with validated metadata; the file is memory-mapped and decoded in place.
pub struct ParquetShard {
    path: PathBuf,
    data: bytes::Bytes,
    meta: ArrowReaderMetadata,
    spec: RowSpec,
    block_rows: usize,
    /// Each row group's byte range and expected XXH3-64 (empty: a cache written without them).
    blocks: Vec<((u64, u64), u64)>,
}

/// The most footer bytes a shard may declare: its thrift metadata is parsed only below this bound.
const MAX_FOOTER: u64 = 64 << 20;

impl ParquetShard {
    /// Opens a shard of `rows` rows in blocks of at most `block_rows`, with no row-group hashes to check.
    pub fn open(path: &Path, spec: &RowSpec, rows: u64, block_rows: usize) -> Result<Self> {
        Self::open_checked(path, spec, rows, block_rows, &[])
    }

    /// [`ParquetShard::open`] with the manifest's row-group hashes (hex), checked on every read when present.
    pub fn open_checked(path: &Path, spec: &RowSpec, rows: u64, block_rows: usize, block_xxh3: &[String]) -> Result<Self> {
        let file = std::fs::File::open(path).ctx(path)?;
        let len = file.metadata().ctx(path)?;
        if !len.is_file() {
            return Err(Error::Io { path: path.into(), source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "not a regular file") });
        }
        let len = len.len();
        let bad = |what: String| Error::corrupt(path, None, what);
        // bound the metadata before the thrift parser sees it: a footer is "<len u32> PAR1" at the end
        if len < 12 {
            return Err(bad(format!("{len} bytes is too short for a Parquet file")));
        }
        // SAFETY: cache files are only read; see KdsShard::open.
        let map = unsafe { memmap2::Mmap::map(&file) }.ctx(path)?;
        let n = map.len();
        let footer = u32::from_le_bytes(map[n - 8..n - 4].try_into().expect("4 bytes")) as u64;
        if &map[n - 4..] != b"PAR1" || footer + 8 > len || footer > MAX_FOOTER {
            return Err(bad(format!("no valid Parquet footer (declared {footer} bytes in a {len}-byte file)")));
        }
        let data = bytes::Bytes::from_owner(map);
        let want = arrow_schema(spec);
        // read with our own schema: the file's embedded Arrow schema is not trusted
        let opts = ArrowReaderOptions::new().with_skip_arrow_metadata(true).with_schema(want.clone());
        let meta =
            guarded(|| ArrowReaderMetadata::load(&data, opts)).map_err(bad)?.map_err(|e| bad(format!("not a readable Parquet shard of this cache: {e}")))?;
        let got = meta.schema();
        if got.fields().len() != want.fields().len()
            || got.fields().iter().zip(want.fields()).any(|(a, b)| a.name() != b.name() || !types_match(a.data_type(), b.data_type()))
        {
            return Err(bad(format!(
                "schema {:?} does not match the manifest's",
                got.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect::<Vec<_>>()
            )));
        }
        let md = meta.metadata();
        let total: i64 = md.row_groups().iter().map(|g| g.num_rows()).sum();
        if total < 0 || total as u64 != rows {
            return Err(bad(format!("holds {total} rows, manifest says {rows}")));
        }
        // the schema above is ours, so list sizes are checked here: a fixed-size-list column chunk holds
        // rows × width leaf values (no nulls are written), a plain column rows values
        let width = |name: &str| -> Option<usize> {
            Some(match name {
                "row" | "view" | "label" => 1,
                "topk_idx" | "topk_logit" => spec.k,
                "lse" | "log_tail" => spec.t(),
                "tail_idx" | "tail_cnt" if spec.tail_samples > 0 => spec.tail_samples,
                "tail_logit" if spec.has_tail_logit() => spec.tail_samples,
                "topk_logit_t" if spec.mixture_values() > 0 => spec.mixture_values(),
                "aug" if spec.aug_dim > 0 => spec.aug_dim,
                _ => return None,
            })
        };
        for (i, g) in md.row_groups().iter().enumerate() {
            let at = || Some(format!("row group {i}"));
            if g.num_rows() <= 0 || g.num_rows() as usize > block_rows {
                return Err(Error::corrupt(path, at(), format!("{} rows (block_rows {block_rows})", g.num_rows())));
            }
            if g.num_columns() != want.fields().len() {
                return Err(Error::corrupt(path, at(), format!("{} column chunks, the manifest implies {}", g.num_columns(), want.fields().len())));
            }
            for c in g.columns() {
                let name = c.column_path().parts().first().map(String::as_str).unwrap_or("");
                let expect = width(name).and_then(|w| w.checked_mul(g.num_rows() as usize));
                if expect != Some(c.num_values() as usize) || c.num_values() < 0 {
                    return Err(Error::corrupt(
                        path,
                        at(),
                        format!(
                            "column {name:?} holds {} values for {} rows; the manifest (K {}, {} temperatures) implies {expect:?}",
                            c.num_values(),
                            g.num_rows(),
                            spec.k,
                            spec.t()
                        ),
                    ));
                }
            }
        }
        let mut blocks = vec![];
        if !block_xxh3.is_empty() {
            if block_xxh3.len() != md.num_row_groups() {
                return Err(bad(format!("{} row groups, the manifest has hashes for {}", md.num_row_groups(), block_xxh3.len())));
            }
            for (i, (g, h)) in md.row_groups().iter().zip(block_xxh3).enumerate() {
                let range = row_group_range(g)
                    .filter(|r| r.1 <= len - footer - 8)
                    .ok_or_else(|| Error::corrupt(path, Some(format!("row group {i}")), "column chunks outside the data"))?;
                let h =
                    u64::from_str_radix(h, 16).map_err(|_| Error::corrupt(path, Some(format!("row group {i}")), format!("manifest hash {h:?} is not hex")))?;
                blocks.push((range, h));
            }
        }
        Ok(ParquetShard { path: path.into(), data, meta, spec: spec.clone(), block_rows, blocks })
    }

    pub fn num_blocks(&self) -> usize {
        self.meta.metadata().num_row_groups()
    }
    pub fn block_len(&self, b: usize) -> usize {
        self.meta.metadata().row_group(b).num_rows() as usize
    }
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }

    pub fn read_block(&self, b: usize) -> Result<RowBatch> {
        let at = || Some(format!("row group {b}"));
        guarded(|| self.read_block_inner(b)).map_err(|e| Error::corrupt(&self.path, at(), e))?
    }

    fn read_block_inner(&self, b: usize) -> Result<RowBatch> {
        let at = || Some(format!("row group {b}"));
        let corrupt = |e: String| Error::corrupt(&self.path, at(), e);
        if let Some(&((lo, hi), want)) = self.blocks.get(b) {
            let got = xxhash_rust::xxh3::xxh3_64(&self.data[lo as usize..hi as usize]);
            if got != want {
                return Err(corrupt(format!("checksum mismatch: the row group's bytes hash to {got:016x}, the manifest says {want:016x}")));
            }
        }
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(self.data.clone(), self.meta.clone())
            .with_row_groups(vec![b])
            .with_batch_size(self.block_len(b))
            .build()
            .map_err(|e| corrupt(e.to_string()))?;
        let mut out = RowBatch::new(&self.spec);
        for rb in reader {
            let rb = rb.map_err(|e| corrupt(e.to_string()))?;
            append(&mut out, &rb, &self.spec).map_err(corrupt)?;
        }
        if out.len() != self.block_len(b) {
            return Err(corrupt(format!("decoded {} rows, expected {}", out.len(), self.block_len(b))));
        }
        Ok(out)
    }
}

fn types_match(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::FixedSizeList(fa, sa), DataType::FixedSizeList(fb, sb)) => sa == sb && fa.data_type() == fb.data_type(),
        _ => a == b,
    }
}

fn prim<T: ArrowPrimitiveType>(a: &dyn Array, name: &str) -> std::result::Result<Vec<T::Native>, String> {
    if a.null_count() > 0 {
        return Err(format!("column {name} has nulls"));
    }
    let p = a.as_any().downcast_ref::<PrimitiveArray<T>>().ok_or(format!("column {name} has the wrong type"))?;
    Ok(p.values().to_vec())
}

fn list<T: ArrowPrimitiveType>(a: &dyn Array, name: &str, size: usize) -> std::result::Result<Vec<T::Native>, String> {
    if a.null_count() > 0 {
        return Err(format!("column {name} has nulls"));
    }
    let l = a.as_any().downcast_ref::<FixedSizeListArray>().ok_or(format!("column {name} is not a fixed-size list"))?;
    if l.value_length() as usize != size {
        return Err(format!("column {name} has lists of {}, expected {size}", l.value_length()));
    }
    let start = l.value_offset_at(0);
    let vals = l.values().slice(start, l.len() * size);
    prim::<T>(vals.as_ref(), name)
}

fn append_logits(out: &mut Logits, a: &dyn Array, name: &str, size: usize) -> std::result::Result<(), String> {
    use arrow::datatypes::*;
    match out {
        Logits::F16(v) => v.extend(list::<Float16Type>(a, name, size)?),
        Logits::Bf16(v) => v.extend(list::<UInt16Type>(a, name, size)?.into_iter().map(half::bf16::from_bits)),
        Logits::F32(v) => v.extend(list::<Float32Type>(a, name, size)?),
    }
    Ok(())
}

fn append(out: &mut RowBatch, rb: &RecordBatch, spec: &RowSpec) -> std::result::Result<(), String> {
    use arrow::datatypes::*;
    let col = |name: &str| rb.column_by_name(name).cloned().ok_or(format!("column {name} is missing"));
    out.row.extend(prim::<UInt64Type>(col("row")?.as_ref(), "row")?);
    out.view.extend(prim::<UInt32Type>(col("view")?.as_ref(), "view")?);
    out.label.extend(prim::<Int64Type>(col("label")?.as_ref(), "label")?);
    out.topk_idx.extend(list::<UInt32Type>(col("topk_idx")?.as_ref(), "topk_idx", spec.k)?);
    append_logits(&mut out.topk_logit, col("topk_logit")?.as_ref(), "topk_logit", spec.k)?;
    out.lse.extend(list::<Float32Type>(col("lse")?.as_ref(), "lse", spec.t())?);
    out.log_tail.extend(list::<Float32Type>(col("log_tail")?.as_ref(), "log_tail", spec.t())?);
    if spec.tail_samples > 0 {
        out.tail_idx.extend(list::<UInt32Type>(col("tail_idx")?.as_ref(), "tail_idx", spec.tail_samples)?);
        out.tail_cnt.extend(list::<UInt32Type>(col("tail_cnt")?.as_ref(), "tail_cnt", spec.tail_samples)?);
        if spec.has_tail_logit() {
            append_logits(&mut out.tail_logit, col("tail_logit")?.as_ref(), "tail_logit", spec.tail_samples)?;
        }
    }
    if spec.mixture_values() > 0 {
        append_logits(&mut out.topk_logit_t, col("topk_logit_t")?.as_ref(), "topk_logit_t", spec.mixture_values())?;
    }
    if spec.aug_dim > 0 {
        out.aug.extend(list::<Float32Type>(col("aug")?.as_ref(), "aug", spec.aug_dim)?);
    }
    out.check_lengths().map_err(|e| e.to_string())
}
