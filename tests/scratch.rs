#![cfg(feature = "torch")]
use kdcache::sample::DisConfig;
use kdcache::train::dis::DisState;
use kdcache::train::loss::{Estimator, LossConfig, Targets, step_loss};
use kdcache::train::optim::{OptConfig, OptKind, RowOptimizer};
use std::time::Instant;
use tch::{Device, Kind, Tensor};
#[test]
fn scratch() {
    let (b, d, k, c) = (256usize, 256i64, 32usize, 20000usize);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let mut tg = Targets { b, k, m: 0, classes: c, idx: vec![], p: vec![], tau: vec![], label: vec![], tail_idx: vec![], tail_w: vec![] };
    for _ in 0..b {
        let ids = rand::seq::index::sample(&mut rng, c, k);
        for (r, j) in ids.into_iter().enumerate() { tg.idx.push(j as i64); tg.p.push(0.5f64.powi(r as i32 + 1)); }
        tg.tau.push(0.03); tg.label.push(tg.idx[tg.idx.len() - k]);
    }
    let mut head = Tensor::randn([c as i64, d + 1], (Kind::Float, Device::Cpu)) * 0.01;
    let mut opt = RowOptimizer::new(OptConfig::new(OptKind::Adam, 1e-3), &head).unwrap();
    for budget in [1024usize, 8192] {
    for tail in [kdcache::sample::Tail::Bucket, kdcache::sample::Tail::Spread] {
        let mut ds = DisState::new(DisConfig { head_rows: budget, tail, ..Default::default() }, &head, 1).unwrap();
        let mut t = [0f64; 6];
        for rep in 0..12 {
            let h = Tensor::randn([b as i64, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let t0 = Instant::now();
            let o = step_loss(&LossConfig { estimator: Estimator::Dis, temperature: 2.0, alpha: 0.9 }, &h, &head, &tg, Some(&mut ds), &mut rng).unwrap();
            let t1 = Instant::now();
            o.loss.backward();
            let t2 = Instant::now();
            let g = o.head_grad().unwrap();
            opt.step_rows(&mut head, o.rows.as_ref().unwrap(), &g).unwrap();
            let t3 = Instant::now();
            let ha = kdcache::train::student::Student::augment(&h.detach()).unwrap();
            ds.after_step(&head, o.rows.as_ref().unwrap(), &o.leaf.detach(), o.plan.as_ref().unwrap(), &ha, 2.0).unwrap();
            let t4 = Instant::now();
            if rep >= 2 { for (i, x) in [(t1 - t0), (t2 - t1), (t3 - t2), (t4 - t3)].iter().enumerate() { t[i] += x.as_secs_f64() * 100.0; } }
        }
        eprintln!("budget {budget} {tail:?}: loss fwd {:.1} ms, backward {:.1} ms, optimizer {:.1} ms, sampler {:.1} ms", t[0], t[1], t[2], t[3]);
    }}
    let mut rng2 = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let tp = Instant::now();
    let mut s = kdcache::sample::Sampler::new(DisConfig { head_rows: 8192, ..Default::default() }, c, 1);
    for _ in 0..10 { let _ = s.plan(&tg.rows_view(), &mut rng2); }
    eprintln!("plan: {:.2} ms", tp.elapsed().as_secs_f64() * 100.0);
}
