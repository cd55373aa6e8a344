//! Mini-batch SGD with momentum and L2 weight decay over a [`Net`], and batched evaluation.
//!
//! Update rule (Caffe's, the paper's): `v ← μ·v − lr·(g + λ·w)`, `w ← w + v`, with `λ` applied
//! to weights, not biases. Pruned positions get no gradient and no velocity, so they stay exact
//! zeros. A shared weight trains its codebook instead: centroid `k` gets the sum of the
//! gradients of the weights coded `k` (the paper's `∂L/∂C_k = Σ ∂L/∂W`), no weight decay, and
//! every coded weight is then reset to its centroid; codes never change.
//!
//! Determinism: the sample order of epoch `e` is a Fisher–Yates shuffle driven by stream `e` of
//! `ChaCha8Rng::seed_from_u64(seed)`; each batch is split into `pieces` fixed contiguous parts
//! whose gradients are summed in part order, so the same seed and options give the same weights
//! bit for bit whatever the number of threads.

use crate::net::{Net, PieceStats, Workspace};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rayon::prelude::*;

/// Labelled samples, each `input_len` values in the model's input layout.
#[derive(Clone, Copy, Debug)]
pub struct Samples<'a> {
    pub inputs: &'a [f32],
    pub labels: &'a [u32],
}

impl Samples<'_> {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Samples `range` of this set.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Samples<'_> {
        let per = self.inputs.len() / self.labels.len().max(1);
        Samples {
            inputs: &self.inputs[range.start * per..range.end * per],
            labels: &self.labels[range],
        }
    }
}

/// How the learning rate moves over a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrSchedule {
    Constant,
    /// Cosine decay from the base rate to zero over the run, per iteration.
    Cosine,
}

/// Training hyperparameters; the defaults are the paper's retraining settings for LeNet
/// (Caffe's momentum 0.9 and weight decay 5e-4, a rate a tenth of the original training's).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub schedule: LrSchedule,
    pub seed: u64,
    /// Parts a batch is split into for parallel gradient computation.
    pub pieces: usize,
}

impl Default for TrainOptions {
    fn default() -> TrainOptions {
        TrainOptions {
            epochs: 4,
            batch: 64,
            lr: 0.005,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: LrSchedule::Cosine,
            seed: 0,
            pieces: 2,
        }
    }
}

/// What one epoch did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's samples.
    pub loss: f64,
    /// Top-1 accuracy on the training samples as they were seen.
    pub accuracy: f64,
}

/// Top-1 and top-5 accuracy over a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accuracy {
    pub samples: usize,
    pub top1: f64,
    pub top5: f64,
}

/// A net with its optimiser state.
#[derive(Debug)]
pub struct Trainer {
    net: Net,
    options: TrainOptions,
    velocity: Vec<Vec<f32>>,
    workspaces: Vec<Workspace>,
    /// The weights transposed for the products (see [`Net::transpose_weights`]), rebuilt
    /// before every batch and shared by its pieces.
    transposed: Vec<Vec<f32>>,
    /// Iterations done, for the learning-rate schedule.
    step: usize,
}

/// A Fisher–Yates permutation of `0..n` from stream `stream` of the seed.
pub fn shuffled(n: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // A uniform index in 0..=i by the multiply-shift reduction of 64 random bits.
        let j = ((u128::from(rng.next_u64()) * (i as u128 + 1)) >> 64) as usize;
        order.swap(i, j);
    }
    order
}

impl Trainer {
    pub fn new(net: Net, options: TrainOptions) -> Trainer {
        let velocity = net
            .params
            .iter()
            .map(|p| {
                vec![
                    0.0;
                    p.shared
                        .as_ref()
                        .map_or(p.values.len(), |s| s.codebook.len())
                ]
            })
            .collect();
        let pieces = options.pieces.max(1);
        let workspaces = (0..pieces).map(|_| Workspace::new(&net)).collect();
        Trainer {
            net,
            options,
            velocity,
            workspaces,
            transposed: Vec::new(),
            step: 0,
        }
    }

    pub fn net(&self) -> &Net {
        &self.net
    }

    pub fn into_net(self) -> Net {
        self.net
    }

    pub fn options(&self) -> &TrainOptions {
        &self.options
    }

    fn lr(&self, total_steps: usize) -> f32 {
        match self.options.schedule {
            LrSchedule::Constant => self.options.lr,
            LrSchedule::Cosine => {
                let t = self.step as f64 / total_steps.max(1) as f64;
                (f64::from(self.options.lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }

    /// One pass over `data` in the seeded order of epoch `epoch` (0-based); `progress` is
    /// called with the samples done and the running mean loss after every batch.
    pub fn epoch(
        &mut self,
        data: Samples<'_>,
        epoch: usize,
        progress: &mut dyn FnMut(usize, f64),
    ) -> EpochStats {
        let n = data.len();
        let per = self.net.input_len();
        let batch = self.options.batch.max(1);
        let batches = n.div_ceil(batch);
        let total_steps = batches * self.options.epochs.max(1);
        let order = shuffled(n, self.options.seed, epoch as u64);
        let mut inputs = vec![0.0f32; batch * per];
        let mut labels = vec![0u32; batch];
        let mut totals = PieceStats::default();
        for (b, chunk) in order.chunks(batch).enumerate() {
            let m = chunk.len();
            for (k, &s) in chunk.iter().enumerate() {
                inputs[k * per..(k + 1) * per]
                    .copy_from_slice(&data.inputs[s * per..(s + 1) * per]);
                labels[k] = data.labels[s];
            }
            let stats = self.batch_step(&inputs[..m * per], &labels[..m], total_steps);
            totals.loss += stats.loss;
            totals.correct += stats.correct;
            let done = (b * batch + m).min(n);
            progress(done, totals.loss / done as f64);
        }
        EpochStats {
            epoch,
            loss: totals.loss / n.max(1) as f64,
            accuracy: totals.correct as f64 / n.max(1) as f64,
        }
    }

    /// Gradients over one batch (in parallel pieces), then one update.
    fn batch_step(&mut self, inputs: &[f32], labels: &[u32], total_steps: usize) -> PieceStats {
        let m = labels.len();
        let per = self.net.input_len();
        let pieces = self.workspaces.len();
        let part = m.div_ceil(pieces);
        self.net.transpose_weights(&mut self.transposed);
        let net = &self.net;
        let transposed = &self.transposed;
        let stats: Vec<PieceStats> = self
            .workspaces
            .par_iter_mut()
            .enumerate()
            .map(|(k, ws)| {
                for g in &mut ws.grads {
                    g.fill(0.0);
                }
                let start = (k * part).min(m);
                let end = ((k + 1) * part).min(m);
                if start == end {
                    return PieceStats::default();
                }
                net.forward_backward(
                    transposed,
                    ws,
                    &inputs[start * per..end * per],
                    &labels[start..end],
                    m,
                )
            })
            .collect();
        // Sum the pieces' gradients into the first, in piece order.
        let (first, rest) = self.workspaces.split_at_mut(1);
        for ws in rest.iter() {
            first[0]
                .grads
                .par_iter_mut()
                .zip(&ws.grads)
                .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += b));
        }
        let lr = self.lr(total_steps);
        self.update(lr);
        self.step += 1;
        stats
            .into_iter()
            .fold(PieceStats::default(), |a, b| PieceStats {
                loss: a.loss + b.loss,
                correct: a.correct + b.correct,
                correct5: a.correct5 + b.correct5,
            })
    }

    fn update(&mut self, lr: f32) {
        let (mu, decay) = (self.options.momentum, self.options.weight_decay);
        let grads = &self.workspaces[0].grads;
        self.net
            .params
            .par_iter_mut()
            .zip(&mut self.velocity)
            .zip(grads)
            .for_each(|((p, v), g)| {
                if let Some(s) = &mut p.shared {
                    let mut gc = vec![0.0f64; s.codebook.len()];
                    for (&c, &g) in s.code_of.iter().zip(g) {
                        if s.is_trained(c) {
                            gc[c as usize] += f64::from(g);
                        }
                    }
                    for (k, (c, v)) in s.codebook.iter_mut().zip(v.iter_mut()).enumerate() {
                        if s.zero_code && k == 0 {
                            continue;
                        }
                        *v = mu * *v - lr * gc[k] as f32;
                        *c += *v;
                    }
                    p.decode_shared();
                    return;
                }
                let decay = if p.is_bias { 0.0 } else { decay };
                match &p.mask {
                    Some(mask) => {
                        for (((w, v), &g), &keep) in
                            p.values.iter_mut().zip(v.iter_mut()).zip(g).zip(mask)
                        {
                            if keep {
                                *v = mu * *v - lr * (g + decay * *w);
                                *w += *v;
                            }
                        }
                    }
                    None => {
                        for ((w, v), &g) in p.values.iter_mut().zip(v.iter_mut()).zip(g) {
                            *v = mu * *v - lr * (g + decay * *w);
                            *w += *v;
                        }
                    }
                }
            });
    }
}

/// Samples per parallel work unit of [`evaluate`].
const EVAL_CHUNK: usize = 250;

/// Top-1 and top-5 accuracy of the net on `data` (batched, both cores).
pub fn evaluate(net: &Net, data: Samples<'_>) -> Accuracy {
    let n = data.len();
    let per = net.input_len();
    let transposed = net.transposed_weights();
    let totals = (0..n.div_ceil(EVAL_CHUNK))
        .into_par_iter()
        .map_init(
            || Workspace::new(net),
            |ws, c| {
                let range = c * EVAL_CHUNK..((c + 1) * EVAL_CHUNK).min(n);
                let m = range.len();
                net.forward_with(
                    &transposed,
                    ws,
                    &data.inputs[range.start * per..range.end * per],
                    m,
                );
                net.score(ws, &data.labels[range])
            },
        )
        .reduce(PieceStats::default, |a, b| PieceStats {
            loss: 0.0,
            correct: a.correct + b.correct,
            correct5: a.correct5 + b.correct5,
        });
    let frac = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Accuracy {
        samples: n,
        top1: frac(totals.correct),
        top5: frac(totals.correct5),
    }
}

/// The logits of every sample, `[n, classes]` row-major.
pub fn predict(net: &Net, inputs: &[f32]) -> Vec<f32> {
    let per = net.input_len();
    let n = inputs.len() / per.max(1);
    let mut ws = Workspace::new(net);
    let transposed = net.transposed_weights();
    let mut out = Vec::with_capacity(n * net.classes());
    for start in (0..n).step_by(EVAL_CHUNK) {
        let end = (start + EVAL_CHUNK).min(n);
        net.forward_with(
            &transposed,
            &mut ws,
            &inputs[start * per..end * per],
            end - start,
        );
        out.extend_from_slice(ws.logits());
    }
    out
}

/// The mean cross-entropy over `data` and its gradient with respect to every parameter (in
/// [`Net::params`] order), in one batch.
pub fn loss_and_gradients(net: &Net, data: Samples<'_>) -> (f64, Vec<Vec<f32>>) {
    let mut ws = Workspace::new(net);
    let n = data.len();
    let stats = net.forward_backward(
        &net.transposed_weights(),
        &mut ws,
        data.inputs,
        data.labels,
        n,
    );
    (stats.loss / n.max(1) as f64, ws.grads)
}
