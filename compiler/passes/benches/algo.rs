//! Benchmarks of the compression kernels at the size of VGG-16's fc6 (25088 × 4096 weights,
//! 4% kept after pruning: 4 110 418 surviving weights over 102 760 448 positions).
//!
//! - `kmeans/linear_k32`: 1-D k-means with 32 clusters, linear initialisation, default
//!   tolerance, on weights distributed like the survivors of magnitude pruning (the two tails
//!   of a normal distribution beyond ±2.054 σ).
//! - `huffman/*`: code construction from the 5-bit cluster codes, encoding and decoding them.
//! - `sparse/*`: relative-index encoding of the surviving positions (5-bit and 4-bit indices)
//!   and decoding.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use sprig_passes::algo::huffman::{HuffmanCode, symbol_frequencies};
use sprig_passes::algo::kmeans::{KMeansOptions, kmeans_1d};
use sprig_passes::algo::sparse::{decode_relative, encode_relative};

const ROWS: u64 = 4096;
const COLUMNS: u64 = 25088;
const DENSITY: f64 = 0.04;
/// Pruning threshold in standard deviations that keeps 4% of normal weights.
const TAIL: f64 = 2.053_748_9;
const SIGMA: f64 = 0.01;

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    // (0, 1]: never zero, so logarithms stay finite.
    ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
}

fn surviving_count() -> usize {
    (ROWS as f64 * COLUMNS as f64 * DENSITY) as usize
}

/// Weights beyond ±TAIL·σ of a normal distribution (Marsaglia's tail method), random signs.
fn pruned_weights(count: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut weights = Vec::with_capacity(count);
    while weights.len() < count {
        let x = (TAIL * TAIL - 2.0 * unit(&mut rng).ln()).sqrt();
        if unit(&mut rng) * x < TAIL {
            let sign = if rng.next_u64() & 1 == 0 { -1.0 } else { 1.0 };
            weights.push((sign * x * SIGMA) as f32);
        }
    }
    weights
}

/// Positions of the survivors: geometric gaps with success probability DENSITY.
fn pruned_positions(count: usize, seed: u64) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 1.0 / (1.0 - DENSITY).ln();
    let mut next = 0u64;
    (0..count)
        .map(|_| {
            let gap = (unit(&mut rng).ln() * scale).floor() as u64;
            let position = next + gap;
            next = position + 1;
            position
        })
        .collect()
}

fn kmeans(c: &mut Criterion) {
    let weights = pruned_weights(surviving_count(), 6);
    let options = KMeansOptions::new(32);
    let mut group = c.benchmark_group("kmeans");
    group.throughput(Throughput::Elements(weights.len() as u64));
    group.bench_function("linear_k32", |b| {
        b.iter(|| kmeans_1d(black_box(&weights), black_box(&options)))
    });
    group.finish();
}

fn huffman(c: &mut Criterion) {
    let weights = pruned_weights(surviving_count(), 6);
    let codes = kmeans_1d(&weights, &KMeansOptions::new(32))
        .map(|clustering| clustering.codes)
        .unwrap_or_default();
    let build = |codes: &[u16]| {
        symbol_frequencies(codes, 32)
            .and_then(|frequencies| HuffmanCode::from_frequencies(&frequencies))
    };
    let Ok(code) = build(&codes) else { return };
    let Ok(stream) = code.encode(&codes) else {
        return;
    };

    let mut group = c.benchmark_group("huffman");
    group.throughput(Throughput::Elements(codes.len() as u64));
    group.bench_function("build", |b| b.iter(|| build(black_box(&codes))));
    group.bench_function("encode", |b| b.iter(|| code.encode(black_box(&codes))));
    group.bench_function("decode", |b| {
        b.iter(|| code.decode(black_box(&stream), codes.len()))
    });
    group.bench_function("build_encode_decode", |b| {
        b.iter(|| {
            let code = build(black_box(&codes)).ok()?;
            let stream = code.encode(&codes).ok()?;
            code.decode(&stream, codes.len()).ok()
        })
    });
    group.finish();
}

fn sparse(c: &mut Criterion) {
    let positions = pruned_positions(surviving_count(), 7);
    let mut group = c.benchmark_group("sparse");
    group.throughput(Throughput::Elements(positions.len() as u64));
    for bits in [5u8, 4] {
        group.bench_function(format!("encode_{bits}bit"), |b| {
            b.iter(|| encode_relative(black_box(&positions), bits))
        });
    }
    if let Ok(index) = encode_relative(&positions, 4) {
        group.bench_function("decode_4bit", |b| {
            b.iter(|| decode_relative(black_box(&index.diffs), black_box(&index.is_filler)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = kmeans, huffman, sparse
}
criterion_main!(benches);
