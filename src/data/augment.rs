//! Augmented views of images: a random resized crop (back to the image's size) and a horizontal flip.
//!
//! One module serves both phases, so they cannot drift: `kdcache cache --views V --augment SPEC` draws a
//! view's parameters ([`AugmentSpec::draw`]), transforms the image ([`apply`]) for the teacher and stores
//! the parameters in the row's `aug` column; `kdcache train` (and the Python package's
//! `kdcache.torch.replay`) re-applies the stored parameters to the student's input with the same
//! [`apply`], bit for bit.
//!
//! A view's parameters are [`AUG_DIM`] float32 values `[top, left, height, width, flip]`: the crop box
//! in pixels of the source image (integers) and 1 for a flipped view, 0 otherwise. The draw follows
//! torchvision's `RandomResizedCrop.get_params` (ten tries of an area share from `scale` and a log-uniform
//! aspect ratio from `ratio`, then the centre crop of the clamped ratio) and `RandomHorizontalFlip`. It is
//! seeded by (seed, example, view) alone, so a batch size, a resume or a `--part` never changes a view.
//! The resize is bilinear with half-pixel centres (torch's `interpolate(mode="bilinear",
//! align_corners=False)` without antialiasing), computed in f32.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Values per view in the `aug` column: `[top, left, height, width, flip]`.
pub const AUG_DIM: usize = 5;

/// The distribution of a view's parameters (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentSpec {
    /// The crop's share of the image's area, drawn uniformly in `[lo, hi]`.
    pub scale: (f64, f64),
    /// The crop's aspect ratio width / height, drawn log-uniformly in `[lo, hi]`.
    pub ratio: (f64, f64),
    /// The probability of a horizontal flip.
    pub flip: f64,
}

impl Default for AugmentSpec {
    /// torchvision's defaults: scale 0.08–1, ratio 3/4–4/3, flip 0.5.
    fn default() -> Self {
        AugmentSpec { scale: (0.08, 1.0), ratio: (0.75, 4.0 / 3.0), flip: 0.5 }
    }
}

/// The layout of an image row: `[channels, height, width]` (a row of shape `[H, W]` is one channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    /// The image layout of a dataset's row shape, or an error naming it: views need images.
    pub fn of(row_shape: &[usize]) -> Result<Self> {
        let s = match *row_shape {
            [c, h, w] => ImageShape { channels: c, height: h, width: w },
            [h, w] => ImageShape { channels: 1, height: h, width: w },
            _ => {
                return Err(Error::invalid(format!(
                    "--views needs image rows [C, H, W] or [H, W]; these data rows have shape {row_shape:?} (vectors have no crop or flip)"
                )));
            }
        };
        if s.channels == 0 || s.height < 2 || s.width < 2 {
            return Err(Error::invalid(format!("--views needs images of at least 2 × 2 pixels; these rows have shape {row_shape:?}")));
        }
        Ok(s)
    }

    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_range(key: &str, v: &str) -> Result<(f64, f64)> {
    let bad = || Error::invalid(format!("--augment {key}={v}: use {key}=LO:HI with 0 < LO <= HI, e.g. {key}=0.08:1"));
    let (a, b) = v.split_once(':').ok_or_else(bad)?;
    let (a, b): (f64, f64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if !(a > 0.0 && a <= b && b.is_finite()) {
        return Err(bad());
    }
    Ok((a, b))
}

impl AugmentSpec {
    /// Parses `scale=LO:HI,ratio=LO:HI,flip=P` (any subset, any order; a key left out takes
    /// torchvision's default: scale 0.08:1, ratio 0.75:1.3333, flip 0.5), or `default`.
    pub fn parse(s: &str) -> Result<Self> {
        let mut spec = AugmentSpec::default();
        if s.trim() == "default" {
            return Ok(spec);
        }
        let mut seen = vec![];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, v) =
                part.split_once('=').ok_or_else(|| Error::invalid(format!("--augment {s:?}: {part:?} is not KEY=VALUE (keys: scale, ratio, flip)")))?;
            let key = key.trim();
            if seen.contains(&key) {
                return Err(Error::invalid(format!("--augment {s:?}: {key} is given twice")));
            }
            seen.push(key);
            match key {
                "scale" => {
                    spec.scale = parse_range(key, v)?;
                    if spec.scale.1 > 1.0 {
                        return Err(Error::invalid(format!("--augment scale={v}: a crop's share of the area is at most 1")));
                    }
                }
                "ratio" => spec.ratio = parse_range(key, v)?,
                "flip" => {
                    spec.flip = v
                        .trim()
                        .parse()
                        .ok()
                        .filter(|p: &f64| (0.0..=1.0).contains(p))
                        .ok_or_else(|| Error::invalid(format!("--augment flip={v}: the flip probability must be a number in [0, 1]")))?
                }
                _ => return Err(Error::invalid(format!("--augment {s:?}: unknown key {key:?} (keys: scale, ratio, flip)"))),
            }
        }
        if seen.is_empty() {
            return Err(Error::invalid(format!("--augment {s:?}: give scale=LO:HI, ratio=LO:HI and/or flip=P, or default")));
        }
        Ok(spec)
    }

    /// The spec in its canonical form (every key, fixed order), as the cache signature records it.
    pub fn canonical(&self) -> String {
        format!("scale={}:{},ratio={}:{},flip={}", self.scale.0, self.scale.1, self.ratio.0, self.ratio.1, self.flip)
    }

    /// The parameters of view `view` of example `example` of an image `shape`, from `seed` alone.
    pub fn draw(&self, shape: ImageShape, seed: u64, example: u64, view: u32) -> [f32; AUG_DIM] {
        let mix = seed ^ example.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (view as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut rng = ChaCha8Rng::seed_from_u64(mix);
        let (h, w) = (shape.height as f64, shape.width as f64);
        let area = h * w;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        let mut boxed = None;
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = if lr1 > lr0 { rng.random_range(lr0..lr1).exp() } else { self.ratio.0 };
            let cw = (target * aspect).sqrt().round();
            let ch = (target / aspect).sqrt().round();
            if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
                let top = rng.random_range(0..=(h - ch) as u64) as f64;
                let left = rng.random_range(0..=(w - cw) as u64) as f64;
                boxed = Some((top, left, ch, cw));
                break;
            }
        }
        let (top, left, ch, cw) = boxed.unwrap_or_else(|| {
            // the centre crop of the whole image at the ratio clamped into range
            let r = w / h;
            let (cw, ch) = if r < self.ratio.0 {
                (w, (w / self.ratio.0).round().clamp(1.0, h))
            } else if r > self.ratio.1 {
                ((h * self.ratio.1).round().clamp(1.0, w), h)
            } else {
                (w, h)
            };
            (((h - ch) / 2.0).floor(), ((w - cw) / 2.0).floor(), ch, cw)
        });
        let flip = rng.random::<f64>() < self.flip;
        [top as f32, left as f32, ch as f32, cw as f32, if flip { 1.0 } else { 0.0 }]
    }
}

/// The view of `example` that training replays in epoch `epoch` (0-based) of a cache with `views` views
/// per example: each example starts at its own view (from the seed) and moves on by one each epoch, so
/// every view serves once before any serves twice, as FKD replays a new crop each epoch.
pub fn epoch_view(seed: u64, epoch: usize, example: u64, views: u32) -> u32 {
    let mut z = seed ^ example.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z % views.max(1) as u64 + epoch as u64) % views.max(1) as u64) as u32
}

/// Checks a view's stored parameters against an image: a crop box of whole pixels inside it and a
/// flip of 0 or 1. A cache's `aug` values are input like any other.
pub fn check(shape: ImageShape, aug: &[f32]) -> std::result::Result<(), String> {
    if aug.len() != AUG_DIM {
        return Err(format!("a view has {} augmentation values; expected {AUG_DIM} [top, left, height, width, flip]", aug.len()));
    }
    let whole = |v: f32| v.is_finite() && v >= 0.0 && v.fract() == 0.0;
    let [top, left, h, w, flip] = [aug[0], aug[1], aug[2], aug[3], aug[4]];
    if !(whole(top) && whole(left) && whole(h) && whole(w) && h >= 1.0 && w >= 1.0) {
        return Err(format!("the crop box {:?} is not made of whole pixels with a height and width of at least 1", &aug[..4]));
    }
    if top + h > shape.height as f32 || left + w > shape.width as f32 {
        return Err(format!("the crop box {:?} [top, left, height, width] leaves the {} × {} image", &aug[..4], shape.height, shape.width));
    }
    if flip != 0.0 && flip != 1.0 {
        return Err(format!("the flip value {flip} is neither 0 nor 1"));
    }
    Ok(())
}

/// The view `aug` of the image `src` (`shape`, channel-major) into `out` (the same shape): the crop box
/// resized bilinearly to the full image, then flipped when asked. Refuses parameters that [`check`]
/// refuses.
pub fn apply(shape: ImageShape, src: &[f32], aug: &[f32], out: &mut Vec<f32>) -> std::result::Result<(), String> {
    check(shape, aug)?;
    if src.len() != shape.len() {
        return Err(format!("an image of {} values is not {} × {} × {}", src.len(), shape.channels, shape.height, shape.width));
    }
    let (hh, ww) = (shape.height, shape.width);
    let (top, left, ch, cw, flip) = (aug[0] as usize, aug[1] as usize, aug[2] as usize, aug[3] as usize, aug[4] == 1.0);
    // per output coordinate: the two source taps (in the crop) and the weight of the second
    let taps = |out_n: usize, in_n: usize| -> Vec<(usize, usize, f32)> {
        let scale = in_n as f32 / out_n as f32;
        (0..out_n)
            .map(|o| {
                let s = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s as usize).min(in_n - 1);
                let i1 = (i0 + 1).min(in_n - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let (ty, tx) = (taps(hh, ch), taps(ww, cw));
    out.clear();
    out.resize(shape.len(), 0.0);
    for c in 0..shape.channels {
        let plane = &src[c * hh * ww..(c + 1) * hh * ww];
        let dst = &mut out[c * hh * ww..(c + 1) * hh * ww];
        for (y, &(y0, y1, ly)) in ty.iter().enumerate() {
            let (r0, r1) = (&plane[(top + y0) * ww + left..], &plane[(top + y1) * ww + left..]);
            for (x, &(x0, x1, lx)) in tx.iter().enumerate() {
                let a = r0[x0] + (r0[x1] - r0[x0]) * lx;
                let b = r1[x0] + (r1[x1] - r1[x0]) * lx;
                let xo = if flip { ww - 1 - x } else { x };
                dst[y * ww + xo] = a + (b - a) * ly;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ImageShape = ImageShape { channels: 3, height: 12, width: 10 };

    fn image() -> Vec<f32> {
        (0..SHAPE.len()).map(|i| ((i * 37) % 101) as f32 - 50.0).collect()
    }

    #[test]
    fn the_whole_image_unflipped_is_the_image_and_a_flip_mirrors_it() {
        let x = image();
        let mut out = vec![];
        apply(SHAPE, &x, &[0.0, 0.0, 12.0, 10.0, 0.0], &mut out).unwrap();
        assert_eq!(out, x);
        apply(SHAPE, &x, &[0.0, 0.0, 12.0, 10.0, 1.0], &mut out).unwrap();
        for c in 0..3 {
            for y in 0..12 {
                for xx in 0..10 {
                    assert_eq!(out[c * 120 + y * 10 + xx], x[c * 120 + y * 10 + 9 - xx]);
                }
            }
        }
    }

    /// Against a direct evaluation of the bilinear formula with half-pixel centres in f64: a 2 × 2 crop
    /// magnified to the full image, each pixel a weighted mean of the crop's pixels.
    #[test]
    fn a_crop_is_resized_bilinearly_with_half_pixel_centres() {
        let x = image();
        let mut out = vec![];
        let aug = [3.0, 4.0, 2.0, 2.0, 0.0];
        apply(SHAPE, &x, &aug, &mut out).unwrap();
        for c in 0..3 {
            for y in 0..12 {
                for xx in 0..10 {
                    let sy = ((y as f64 + 0.5) * 2.0 / 12.0 - 0.5).clamp(0.0, 1.0);
                    let sx = ((xx as f64 + 0.5) * 2.0 / 10.0 - 0.5).clamp(0.0, 1.0);
                    let p = |dy: usize, dx: usize| x[c * 120 + (3 + dy) * 10 + 4 + dx] as f64;
                    let want = (1.0 - sy) * ((1.0 - sx) * p(0, 0) + sx * p(0, 1)) + sy * ((1.0 - sx) * p(1, 0) + sx * p(1, 1));
                    let got = out[c * 120 + y * 10 + xx] as f64;
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "({c},{y},{xx}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn draws_are_deterministic_inside_the_image_and_follow_the_spec() {
        let spec = AugmentSpec::parse("scale=0.25:0.5,ratio=0.5:2,flip=0.5").unwrap();
        let (mut flips, mut views) = (0, 0);
        for example in 0..200u64 {
            for view in 0..4u32 {
                let a = spec.draw(SHAPE, 7, example, view);
                assert_eq!(a, spec.draw(SHAPE, 7, example, view));
                check(SHAPE, &a).unwrap();
                let share = (a[2] * a[3]) as f64 / 120.0;
                assert!((0.2..=0.6).contains(&share), "{a:?}: share {share}");
                flips += a[4] as usize;
                views += 1;
            }
        }
        assert!((350..450).contains(&flips), "{flips} flips in {views} views");
        assert_ne!(spec.draw(SHAPE, 7, 0, 0), spec.draw(SHAPE, 8, 0, 0));
        assert_ne!(spec.draw(SHAPE, 7, 0, 0), spec.draw(SHAPE, 7, 0, 1));
        // no crop of this share fits: the centre crop of the clamped ratio
        let wide = AugmentSpec::parse("scale=1:1,ratio=3:4,flip=0").unwrap();
        assert_eq!(wide.draw(SHAPE, 0, 0, 0), [4.0, 0.0, 3.0, 10.0, 0.0]);
    }

    #[test]
    fn specs_parse_with_defaults_and_bad_ones_are_refused() {
        assert_eq!(AugmentSpec::parse("default").unwrap(), AugmentSpec::default());
        let s = AugmentSpec::parse("flip=0").unwrap();
        assert_eq!((s.scale, s.flip), ((0.08, 1.0), 0.0));
        assert_eq!(AugmentSpec::parse(&s.canonical()).unwrap(), s);
        for bad in ["", "scale", "scale=0.5", "scale=0.9:0.2", "scale=0:1", "scale=0.5:2", "flip=2", "crop=1", "flip=0,flip=1", "ratio=a:b"] {
            let e = AugmentSpec::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--augment"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn hostile_parameters_are_refused() {
        let x = image();
        let mut out = vec![];
        for bad in [
            [0.0, 0.0, 13.0, 10.0, 0.0],
            [0.5, 0.0, 2.0, 2.0, 0.0],
            [0.0, 0.0, 0.0, 2.0, 0.0],
            [0.0, 0.0, 2.0, 2.0, 0.5],
            [f32::NAN, 0.0, 2.0, 2.0, 0.0],
            [-1.0, 0.0, 2.0, 2.0, 0.0],
            [11.0, 9.0, 2.0, 2.0, 0.0],
        ] {
            assert!(apply(SHAPE, &x, &bad, &mut out).is_err(), "{bad:?}");
        }
        assert!(apply(SHAPE, &x, &[0.0; 4], &mut out).is_err());
        assert!(ImageShape::of(&[64]).is_err());
        assert_eq!(ImageShape::of(&[8, 9]).unwrap(), ImageShape { channels: 1, height: 8, width: 9 });
    }
}
