//! The physical columns of a cache row and their byte views, shared by the kds and Parquet codecs.
use crate::error::Result;
use crate::format::rows::{LogitDtype, Logits, RowBatch, RowSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Row,
    View,
    Label,
    TopkIdx,
    TopkLogit,
    Lse,
    LogTail,
    TailIdx,
    TailCnt,
    Aug,
}

impl Col {
    pub fn name(self) -> &'static str {
        match self {
            Col::Row => "row",
            Col::View => "view",
            Col::Label => "label",
            Col::TopkIdx => "topk_idx",
            Col::TopkLogit => "topk_logit",
            Col::Lse => "lse",
            Col::LogTail => "log_tail",
            Col::TailIdx => "tail_idx",
            Col::TailCnt => "tail_cnt",
            Col::Aug => "aug",
        }
    }

    /// (element width in bytes, values per row)
    pub fn shape(self, spec: &RowSpec) -> (usize, usize) {
        match self {
            Col::Row | Col::Label => (8, 1),
            Col::View => (4, 1),
            Col::TopkIdx => (4, spec.k),
            Col::TopkLogit => (spec.logit_dtype.width(), spec.k),
            Col::Lse | Col::LogTail => (4, spec.t()),
            Col::TailIdx | Col::TailCnt => (4, spec.tail_samples),
            Col::Aug => (4, spec.aug_dim),
        }
    }
}

/// The columns present for a spec, in storage order.
pub fn columns(spec: &RowSpec) -> Vec<Col> {
    let mut c = vec![Col::Row, Col::View, Col::Label, Col::TopkIdx, Col::TopkLogit, Col::Lse, Col::LogTail];
    if spec.tail_samples > 0 {
        c.extend([Col::TailIdx, Col::TailCnt]);
    }
    if spec.aug_dim > 0 {
        c.push(Col::Aug);
    }
    c
}

/// The little-endian bytes of one column of a batch.
pub fn col_bytes(b: &RowBatch, col: Col) -> &[u8] {
    match col {
        Col::Row => bytemuck::cast_slice(&b.row),
        Col::View => bytemuck::cast_slice(&b.view),
        Col::Label => bytemuck::cast_slice(&b.label),
        Col::TopkIdx => bytemuck::cast_slice(&b.topk_idx),
        Col::TopkLogit => b.topk_logit.as_bytes(),
        Col::Lse => bytemuck::cast_slice(&b.lse),
        Col::LogTail => bytemuck::cast_slice(&b.log_tail),
        Col::TailIdx => bytemuck::cast_slice(&b.tail_idx),
        Col::TailCnt => bytemuck::cast_slice(&b.tail_cnt),
        Col::Aug => bytemuck::cast_slice(&b.aug),
    }
}

/// A zeroed column of `n` values as a typed vector inside the batch; returns its bytes to fill.
pub fn col_alloc(b: &mut RowBatch, col: Col, n: usize) -> &mut [u8] {
    fn z<T: bytemuck::Pod + bytemuck::Zeroable>(v: &mut Vec<T>, n: usize) -> &mut [u8] {
        *v = bytemuck::zeroed_vec(n);
        bytemuck::cast_slice_mut(v)
    }
    match col {
        Col::Row => z(&mut b.row, n),
        Col::View => z(&mut b.view, n),
        Col::Label => z(&mut b.label, n),
        Col::TopkIdx => z(&mut b.topk_idx, n),
        Col::TopkLogit => match &mut b.topk_logit {
            Logits::F16(v) => z(v, n),
            Logits::Bf16(v) => z(v, n),
            Logits::F32(v) => z(v, n),
        },
        Col::Lse => z(&mut b.lse, n),
        Col::LogTail => z(&mut b.log_tail, n),
        Col::TailIdx => z(&mut b.tail_idx, n),
        Col::TailCnt => z(&mut b.tail_cnt, n),
        Col::Aug => z(&mut b.aug, n),
    }
}

/// Byte-shuffles `src` (elements of width `w`): all first bytes, then all second bytes, ...
pub fn shuffle(src: &[u8], w: usize, dst: &mut Vec<u8>) {
    dst.clear();
    dst.resize(src.len(), 0);
    if w == 1 {
        dst.copy_from_slice(src);
        return;
    }
    let n = src.len() / w;
    for (i, e) in src.chunks_exact(w).enumerate() {
        for (b, &x) in e.iter().enumerate() {
            dst[b * n + i] = x;
        }
    }
}

/// Inverse of [`shuffle`]; `src.len() == dst.len()`, a multiple of `w`.
pub fn unshuffle(src: &[u8], w: usize, dst: &mut [u8]) {
    debug_assert_eq!(src.len(), dst.len());
    let n = src.len() / w;
    match w {
        1 => dst.copy_from_slice(src),
        2 => {
            let (a, b) = src.split_at(n);
            for ((o, &x), &y) in dst.chunks_exact_mut(2).zip(a).zip(b) {
                o[0] = x;
                o[1] = y;
            }
        }
        4 => {
            let (a, rest) = src.split_at(n);
            let (b, rest) = rest.split_at(n);
            let (c, d) = rest.split_at(n);
            for (i, o) in dst.chunks_exact_mut(4).enumerate() {
                o[0] = a[i];
                o[1] = b[i];
                o[2] = c[i];
                o[3] = d[i];
            }
        }
        _ => {
            for (i, o) in dst.chunks_exact_mut(w).enumerate() {
                for (b, x) in o.iter_mut().enumerate() {
                    *x = src[b * n + i];
                }
            }
        }
    }
}

pub fn dtype_from_name(s: &str) -> Result<LogitDtype> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn shuffle_roundtrip() {
        for w in [1, 2, 4, 8] {
            let src: Vec<u8> = (0..(w * 37) as u32).map(|x| (x * 7 + 3) as u8).collect();
            let mut s = vec![];
            shuffle(&src, w, &mut s);
            let mut back = vec![0; src.len()];
            unshuffle(&s, w, &mut back);
            assert_eq!(back, src);
            if w > 1 {
                assert_ne!(s, src);
            }
        }
    }
}
