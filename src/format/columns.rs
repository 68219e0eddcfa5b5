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
    TailLogit,
    TopkLogitT,
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
            Col::TailLogit => "tail_logit",
            Col::TopkLogitT => "topk_logit_t",
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
            Col::TailLogit => (spec.logit_dtype.width(), spec.tail_samples),
            Col::TopkLogitT => (spec.logit_dtype.width(), spec.mixture_values()),
            Col::Aug => (4, spec.aug_dim),
        }
    }
}

/// The columns present for a spec, in storage order.
pub fn columns(spec: &RowSpec) -> Vec<Col> {
    let mut c = vec![Col::Row, Col::View, Col::Label, Col::TopkIdx, Col::TopkLogit, Col::Lse, Col::LogTail];
    if spec.tail_samples > 0 {
        c.extend([Col::TailIdx, Col::TailCnt]);
        if spec.has_tail_logit() {
            c.push(Col::TailLogit);
        }
    }
    if spec.mixture_values() > 0 {
        c.push(Col::TopkLogitT);
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
        Col::TailLogit => b.tail_logit.as_bytes(),
        Col::TopkLogitT => b.topk_logit_t.as_bytes(),
        Col::Aug => bytemuck::cast_slice(&b.aug),
    }
}

/// Sets one column of a batch from its byte-shuffled little-endian bytes (see [`unshuffle_vec`]).
pub fn col_set_shuffled(b: &mut RowBatch, col: Col, src: &[u8]) {
    match col {
        Col::Row => b.row = unshuffle_vec(src),
        Col::View => b.view = unshuffle_vec(src),
        Col::Label => b.label = unshuffle_vec(src),
        Col::TopkIdx => b.topk_idx = unshuffle_vec(src),
        Col::TopkLogit => set_logits(&mut b.topk_logit, src),
        Col::TailLogit => set_logits(&mut b.tail_logit, src),
        Col::TopkLogitT => set_logits(&mut b.topk_logit_t, src),
        Col::Lse => b.lse = unshuffle_vec(src),
        Col::LogTail => b.log_tail = unshuffle_vec(src),
        Col::TailIdx => b.tail_idx = unshuffle_vec(src),
        Col::TailCnt => b.tail_cnt = unshuffle_vec(src),
        Col::Aug => b.aug = unshuffle_vec(src),
    }
}

fn set_logits(l: &mut Logits, src: &[u8]) {
    match l {
        Logits::F16(v) => *v = unshuffle_vec(src),
        Logits::Bf16(v) => *v = unshuffle_vec(src),
        Logits::F32(v) => *v = unshuffle_vec(src),
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

/// Inverse of [`shuffle`] into a new vector of `src.len() / size_of::<T>()` values. Each element is
/// assembled as an integer from its byte planes and collected without zeroing the vector first
/// (vectorised by the compiler; ~4x a byte-by-byte loop into a zeroed buffer).
pub fn unshuffle_vec<T: bytemuck::Pod>(src: &[u8]) -> Vec<T> {
    fn planes<const W: usize>(src: &[u8]) -> [&[u8]; W] {
        let n = src.len() / W;
        std::array::from_fn(|b| &src[b * n..(b + 1) * n])
    }
    fn cast<U: bytemuck::Pod, T: bytemuck::Pod>(v: Vec<U>) -> Vec<T> {
        bytemuck::allocation::try_cast_vec(v).unwrap_or_else(|(_, v)| bytemuck::allocation::pod_collect_to_vec(&v))
    }
    match std::mem::size_of::<T>() {
        1 => bytemuck::allocation::pod_collect_to_vec(src),
        2 => {
            let [a, b] = planes::<2>(src);
            cast(a.iter().zip(b).map(|(&x, &y)| u16::from_le_bytes([x, y])).collect::<Vec<u16>>())
        }
        4 => {
            let [a, b, c, d] = planes::<4>(src);
            cast(a.iter().zip(b).zip(c).zip(d).map(|(((&x0, &x1), &x2), &x3)| u32::from_le_bytes([x0, x1, x2, x3])).collect::<Vec<u32>>())
        }
        8 => {
            let p = planes::<8>(src);
            cast((0..src.len() / 8).map(|i| u64::from_le_bytes(std::array::from_fn(|b| p[b][i]))).collect::<Vec<u64>>())
        }
        w => {
            let n = src.len() / w;
            let mut out = vec![0u8; src.len()];
            for (i, o) in out.chunks_exact_mut(w).enumerate() {
                for (b, x) in o.iter_mut().enumerate() {
                    *x = src[b * n + i];
                }
            }
            bytemuck::allocation::pod_collect_to_vec(&out)
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
        for (w, n) in [1, 2, 3, 4, 8].into_iter().flat_map(|w| [(w, 37), (w, 0), (w, 1)]) {
            let src: Vec<u8> = (0..(w * n) as u32).map(|x| (x * 7 + 3) as u8).collect();
            let mut s = vec![];
            shuffle(&src, w, &mut s);
            let back: Vec<u8> = match w {
                1 => unshuffle_vec::<u8>(&s),
                2 => bytemuck::cast_slice(&unshuffle_vec::<u16>(&s)).to_vec(),
                3 => bytemuck::cast_slice(&unshuffle_vec::<[u8; 3]>(&s)).to_vec(),
                4 => bytemuck::cast_slice(&unshuffle_vec::<f32>(&s)).to_vec(),
                _ => bytemuck::cast_slice(&unshuffle_vec::<i64>(&s)).to_vec(),
            };
            assert_eq!(back, src, "w {w}, n {n}");
            if w > 1 && n > 1 {
                assert_ne!(s, src);
            }
        }
    }
}
