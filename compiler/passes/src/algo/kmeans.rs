//! One-dimensional k-means, the clustering step of weight sharing.
//!
//! Input: a slice of finite `f32` values (a layer's surviving weights) and [`KMeansOptions`]
//! (number of clusters `k`, initialisation, tolerance, iteration cap, seed).
//! Output: a [`Clustering`]: `k` centroids sorted ascending, one 16-bit code per input value
//! (an index into the centroids), the number of Lloyd iterations run and whether they converged.
//!
//! Invariants of a successful result, for `n > 0` values:
//! - `centroids.len() == k` and `centroids` is non-decreasing; every centroid lies in
//!   `[min, max]` of the values. Duplicate centroids appear when the initialisation puts two
//!   centroids on the same value (the data have fewer distinct values than `k`, or `Density` on
//!   data with many repeated values) and no value ever pulls them apart, or when two distinct
//!   `f64` centroids round to the same `f32`.
//! - `codes.len() == n` and `codes[i]` is the index of the centroid nearest to `values[i]`;
//!   on a tie the lower index wins, so of equal centroids only the first is ever used.
//! - Same inputs and options give the same result (the seed drives a ChaCha8 stream).
//!
//! For `n == 0` the result is empty (no centroids, no codes, zero iterations, converged).
//!
//! Lloyd iterations: assign each value to its nearest centroid, then move each centroid to the
//! mean of its values (accumulated in `f64`). A centroid whose cluster is empty stays where it is
//! (the centroids are re-sorted if that breaks their order, so codes stay ordered by value).
//! The loop stops when no centroid moved by more than `tolerance × (max − min)` in the last
//! iteration (`converged = true`) or after `max_iterations` iterations.
//!
//! Initialisations (as in Deep Compression): `Linear` spaces the centroids evenly over
//! `[min, max]` (`min + (max − min)·i/(k − 1)`, or the midpoint when `k == 1`); `Density` spaces
//! them evenly on the y axis of the empirical CDF (centroid `i` is the sorted value at rank
//! `⌊(i + ½)·n/k⌋`); `Random` (Forgy) picks `k` distinct data values uniformly among the distinct
//! values; `KMeansPlusPlus` picks the first centroid uniformly among the data points and each next
//! one with probability proportional to the squared distance to the nearest centroid chosen so far.
//! When the data have fewer than `k` distinct values, `Random` and `KMeansPlusPlus` use every
//! distinct value and repeat the largest one for the remaining centroids.
//!
//! Complexity: one radix sort of the values, O(n); a table of prefix sums at every 64th sorted
//! value, O(n); then each Lloyd iteration works on the sorted values only: a cluster is the run of
//! sorted values between two assignment boundaries (midpoints of neighbouring centroids), found by
//! galloping from the previous iteration's boundary, and its sum is a difference of two prefix
//! sums (each a stored block sum plus at most 63 values), so an iteration costs O(k log n) at
//! worst and usually much less; codes are assigned once at the end by a branch-free binary search
//! over the k − 1 boundaries, O(n log k) (with a nearest-centroid check per value when the data
//! span more than 2^27 in magnitude, where midpoints may round).
//! `KMeansPlusPlus` adds O(n) per chosen centroid at worst. Memory: the sorted copy (4n bytes),
//! its scratch buffer while sorting (4n bytes), the block sums (n/8 bytes) and the codes (2n bytes).

use std::collections::BTreeSet;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use thiserror::Error;

/// Codes are `u16`, so at most 2^16 clusters.
pub const MAX_CLUSTERS: usize = 1 << 16;

/// How the centroids are placed before the first Lloyd iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Init {
    /// Evenly spaced over `[min, max]`; keeps the rare large weights (the paper's choice).
    #[default]
    Linear,
    /// Evenly spaced on the y axis of the empirical CDF (quantiles).
    Density,
    /// Forgy: `k` distinct data values chosen at random.
    Random,
    /// k-means++ seeding (D² sampling).
    KMeansPlusPlus,
}

/// Options of [`kmeans_1d`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansOptions {
    /// Number of clusters `k`, in `1..=MAX_CLUSTERS`.
    pub clusters: usize,
    /// Centroid initialisation.
    pub init: Init,
    /// Convergence threshold: the largest centroid move allowed in the final iteration, as a
    /// fraction of the value range `max − min`. Finite and non-negative.
    pub tolerance: f64,
    /// Upper bound on the number of Lloyd iterations (0 returns the initial centroids).
    pub max_iterations: usize,
    /// Seed of the ChaCha8 stream used by `Random` and `KMeansPlusPlus`.
    pub seed: u64,
}

impl KMeansOptions {
    /// `clusters` clusters with linear initialisation, tolerance 1e-6, at most 10 000 iterations,
    /// seed 0.
    pub fn new(clusters: usize) -> Self {
        Self {
            clusters,
            init: Init::Linear,
            tolerance: 1e-6,
            max_iterations: 10_000,
            seed: 0,
        }
    }
}

impl Default for KMeansOptions {
    /// 32 clusters (5-bit codes, Deep Compression's choice for fully connected layers).
    fn default() -> Self {
        Self::new(32)
    }
}

/// Result of [`kmeans_1d`]; see the module documentation for its invariants.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// The codebook, non-decreasing.
    pub centroids: Vec<f32>,
    /// For each input value, the index of its nearest centroid (ties to the lower index).
    pub codes: Vec<u16>,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Whether the last iteration moved every centroid by at most the tolerance.
    pub converged: bool,
}

/// Why [`kmeans_1d`] refused its input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum KMeansError {
    /// `clusters == 0`.
    #[error("k-means needs at least one cluster")]
    NoClusters,
    /// `clusters > MAX_CLUSTERS`.
    #[error("{clusters} clusters requested, but codes are 16-bit: at most {MAX_CLUSTERS}")]
    TooManyClusters {
        /// The requested number of clusters.
        clusters: usize,
    },
    /// The tolerance is negative or not a number.
    #[error("tolerance must be finite and non-negative, got {tolerance}")]
    InvalidTolerance {
        /// The rejected tolerance.
        tolerance: f64,
    },
    /// A value is NaN or infinite.
    #[error("value {index} is {value}, not a finite number")]
    NonFinite {
        /// Position of the first non-finite value.
        index: usize,
        /// The value itself.
        value: f32,
    },
}

/// Clusters `values` into `options.clusters` groups; see the module documentation.
pub fn kmeans_1d(values: &[f32], options: &KMeansOptions) -> Result<Clustering, KMeansError> {
    validate(options)?;
    if let Some(index) = values.iter().position(|value| !value.is_finite()) {
        return Err(KMeansError::NonFinite {
            index,
            value: values[index],
        });
    }
    if values.is_empty() {
        return Ok(Clustering {
            centroids: Vec::new(),
            codes: Vec::new(),
            iterations: 0,
            converged: true,
        });
    }

    let sorted = SortedValues::new(values);
    let mut centroids = initial_centroids(&sorted, options);
    let (iterations, converged) = lloyd(&sorted, &mut centroids, options);
    drop(sorted);

    // Monotone rounding keeps the codebook non-decreasing.
    let centroids: Vec<f32> = centroids.iter().map(|&centroid| centroid as f32).collect();
    let codes = nearest_codes(values, &centroids);
    Ok(Clustering {
        centroids,
        codes,
        iterations,
        converged,
    })
}

/// For each value, the index of the nearest centroid in the non-decreasing `centroids`
/// (ties to the lower index). Empty `centroids` give all-zero codes only if `values` is empty too;
/// otherwise every code is 0.
pub fn nearest_codes(values: &[f32], centroids: &[f32]) -> Vec<u16> {
    if centroids.len() <= 1 {
        return vec![0; values.len()];
    }
    let centroids: Vec<f64> = centroids
        .iter()
        .map(|&centroid| f64::from(centroid))
        .collect();
    let boundaries = assignment_boundaries(&centroids);
    // Cluster = number of boundaries strictly below the value (a value on a boundary belongs to
    // the lower cluster); `partition_point` is a branch-free binary search.
    let cluster = |value: f64| boundaries.partition_point(|&boundary| boundary < value);
    if midpoints_are_exact(values, &centroids) {
        return values
            .iter()
            .map(|&value| cluster(f64::from(value)) as u16)
            .collect();
    }
    let last = centroids.len() - 1;
    values
        .iter()
        .map(|&value| {
            let value = f64::from(value);
            let mut code = cluster(value);
            // Midpoints may have rounded: settle on the nearest centroid, lowest on ties.
            while code < last
                && (value - centroids[code + 1]).abs() < (value - centroids[code]).abs()
            {
                code += 1;
            }
            while code > 0 && (value - centroids[code - 1]).abs() <= (value - centroids[code]).abs()
            {
                code -= 1;
            }
            code as u16
        })
        .collect()
}

/// Whether every sum and difference of two of the `f32` numbers involved is exact in `f64`:
/// true when the largest magnitude is at most 2^27 times the smallest non-zero one (binary
/// exponents then differ by at most 28, so any sum or difference fits in 24 + 29 = 53 bits).
/// Then `v <= (a + b) / 2` holds exactly when `|v − a| <= |b − v|`, and comparing against
/// midpoints is the nearest-centroid rule itself.
fn midpoints_are_exact(values: &[f32], centroids: &[f64]) -> bool {
    let (mut smallest, mut largest) = (f32::INFINITY, 0.0f32);
    let centroids_f32 = centroids.iter().map(|&centroid| centroid as f32);
    for magnitude in values.iter().copied().chain(centroids_f32).map(f32::abs) {
        largest = largest.max(magnitude);
        // Zero is exact in every sum and difference.
        smallest = smallest.min(if magnitude > 0.0 {
            magnitude
        } else {
            f32::INFINITY
        });
    }
    f64::from(largest) <= f64::from(smallest) * (1u64 << 27) as f64
}

fn validate(options: &KMeansOptions) -> Result<(), KMeansError> {
    if options.clusters == 0 {
        return Err(KMeansError::NoClusters);
    }
    if options.clusters > MAX_CLUSTERS {
        return Err(KMeansError::TooManyClusters {
            clusters: options.clusters,
        });
    }
    if !(options.tolerance.is_finite() && options.tolerance >= 0.0) {
        return Err(KMeansError::InvalidTolerance {
            tolerance: options.tolerance,
        });
    }
    Ok(())
}

/// The values sorted ascending, with prefix sums at block starts for cluster sums.
struct SortedValues {
    /// Non-empty, non-decreasing, finite.
    values: Vec<f32>,
    /// `block_prefix[b] = Σ_{j < b·SUM_BLOCK} (values[j] − offset)`, for `b` in
    /// `0..=values.len() / SUM_BLOCK`. Summing offsets from the minimum keeps partial sums small
    /// relative to the range, so differences of prefix sums lose little precision even for data
    /// far from zero; storing one sum per block keeps the table small (n / 8 bytes).
    block_prefix: Vec<f64>,
    offset: f64,
}

/// Values per stored prefix sum; a prefix at an arbitrary index adds at most this many values.
const SUM_BLOCK: usize = 64;

impl SortedValues {
    fn new(values: &[f32]) -> Self {
        let values = radix_sort(values);
        let offset = f64::from(values[0]);
        let mut block_prefix = Vec::with_capacity(values.len() / SUM_BLOCK + 1);
        let mut running = 0.0f64;
        block_prefix.push(running);
        for block in values.chunks_exact(SUM_BLOCK) {
            running += block
                .iter()
                .map(|&value| f64::from(value) - offset)
                .sum::<f64>();
            block_prefix.push(running);
        }
        Self {
            values,
            block_prefix,
            offset,
        }
    }

    fn min(&self) -> f64 {
        f64::from(self.values[0])
    }

    fn max(&self) -> f64 {
        f64::from(self.values[self.values.len() - 1])
    }

    /// `Σ_{j < end} (values[j] − offset)`, for `end <= values.len()`. O(SUM_BLOCK).
    fn prefix(&self, end: usize) -> f64 {
        let block = end / SUM_BLOCK;
        let partial: f64 = self.values[block * SUM_BLOCK..end]
            .iter()
            .map(|&value| f64::from(value) - self.offset)
            .sum();
        self.block_prefix[block] + partial
    }

    /// Mean of `values[start..end]` (non-empty) given the two prefix sums, clamped into the
    /// run's own `[first, last]` so rounding can never push a centroid past a neighbouring
    /// cluster.
    fn mean(&self, start: usize, end: usize, prefix_start: f64, prefix_end: f64) -> f64 {
        let mean = self.offset + (prefix_end - prefix_start) / (end - start) as f64;
        mean.max(f64::from(self.values[start]))
            .min(f64::from(self.values[end - 1]))
    }
}

/// Order-preserving map from finite `f32` to `u32` (negative values flipped entirely,
/// non-negative values get the sign bit set).
fn sort_key(value: f32) -> u32 {
    let bits = value.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

fn from_sort_key(key: u32) -> f32 {
    let bits = if key & 0x8000_0000 != 0 {
        key & 0x7FFF_FFFF
    } else {
        !key
    };
    f32::from_bits(bits)
}

/// Ascending sort of finite values: LSD radix sort on the order-preserving keys, three passes of
/// 11 bits (a pass whose digit is the same for every key is skipped). O(n), stable.
fn radix_sort(values: &[f32]) -> Vec<f32> {
    const DIGIT_BITS: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT_BITS;
    const PASSES: usize = 3;
    if values.len() < 256 {
        let mut keys: Vec<u32> = values.iter().map(|&value| sort_key(value)).collect();
        keys.sort_unstable();
        return keys.into_iter().map(from_sort_key).collect();
    }
    let digit =
        |key: u32, pass: usize| ((key >> (pass as u32 * DIGIT_BITS)) as usize) & (BUCKETS - 1);
    let mut counts = vec![[0usize; BUCKETS]; PASSES];
    let mut keys = Vec::with_capacity(values.len());
    for &value in values {
        let key = sort_key(value);
        keys.push(key);
        for (pass, pass_counts) in counts.iter_mut().enumerate() {
            pass_counts[digit(key, pass)] += 1;
        }
    }
    let mut scratch = vec![0u32; keys.len()];
    for (pass, pass_counts) in counts.iter().enumerate() {
        if pass_counts.contains(&keys.len()) {
            continue;
        }
        let mut next_slot = [0usize; BUCKETS];
        let mut running = 0;
        for (slot, &count) in next_slot.iter_mut().zip(pass_counts.iter()) {
            *slot = running;
            running += count;
        }
        for &key in &keys {
            let bucket = digit(key, pass);
            scratch[next_slot[bucket]] = key;
            next_slot[bucket] += 1;
        }
        std::mem::swap(&mut keys, &mut scratch);
    }
    keys.into_iter().map(from_sort_key).collect()
}

/// `boundaries[j]` separates cluster `j` from cluster `j + 1` for non-decreasing centroids:
/// values `<= boundaries[j]` belong to cluster `j` or lower. Between distinct neighbours it is
/// their midpoint; the upper one of equal centroids gets an empty range (its boundary equals the
/// next one), so ties go to the lower index. Non-decreasing; `len == centroids.len() − 1`.
fn assignment_boundaries(centroids: &[f64]) -> Vec<f64> {
    let mut boundaries = vec![0.0; centroids.len().saturating_sub(1)];
    let mut next_boundary = f64::INFINITY;
    for j in (0..boundaries.len()).rev() {
        if centroids[j] < centroids[j + 1] {
            next_boundary = (centroids[j] + centroids[j + 1]) * 0.5;
        }
        boundaries[j] = next_boundary;
    }
    boundaries
}

/// Runs Lloyd iterations on sorted data; returns (iterations, converged).
fn lloyd(sorted: &SortedValues, centroids: &mut [f64], options: &KMeansOptions) -> (usize, bool) {
    let count = sorted.values.len();
    let clusters = centroids.len();
    let threshold = options.tolerance * (sorted.max() - sorted.min());
    // ends[j]: one past the last sorted value of cluster j; cluster j is ends[j-1]..ends[j].
    // Kept between iterations as the starting point of the next search.
    let mut ends = vec![0usize; clusters];
    for iteration in 1..=options.max_iterations {
        let boundaries = assignment_boundaries(centroids);
        for (end, &boundary) in ends.iter_mut().zip(&boundaries) {
            *end = partition_point_near(&sorted.values, *end, |value| f64::from(value) <= boundary);
        }
        ends[clusters - 1] = count;

        let mut largest_move = 0.0f64;
        let mut start = 0;
        let mut prefix_start = 0.0;
        for (centroid, &end) in centroids.iter_mut().zip(&ends) {
            // An empty cluster keeps its centroid.
            if end > start {
                let prefix_end = sorted.prefix(end);
                let mean = sorted.mean(start, end, prefix_start, prefix_end);
                largest_move = largest_move.max((mean - *centroid).abs());
                *centroid = mean;
                prefix_start = prefix_end;
            }
            start = end;
        }
        // Means of consecutive runs are ordered, and an empty cluster's centroid lies between
        // its neighbours' boundaries, except for the upper one of two equal centroids (its range
        // is empty by the tie rule) when the lower one moves up past it: re-sort in that case.
        if !centroids.is_sorted() {
            centroids.sort_by(f64::total_cmp);
        }
        if largest_move <= threshold {
            return (iteration, true);
        }
    }
    (options.max_iterations, false)
}

/// The partition point of `predicate` over `values` (the first index where it is false, given
/// it holds on a prefix), searched by galloping outward from `hint`: O(log d) for a result at
/// distance d from the hint.
fn partition_point_near(values: &[f32], hint: usize, predicate: impl Fn(f32) -> bool) -> usize {
    let len = values.len();
    let hint = hint.min(len);
    if hint < len && predicate(values[hint]) {
        // The answer is at least `low`.
        let mut low = hint + 1;
        let mut step = 1;
        loop {
            let probe = low + step;
            if probe > len {
                return low + values[low..].partition_point(|&value| predicate(value));
            }
            if predicate(values[probe - 1]) {
                low = probe;
                step *= 2;
            } else {
                return low + values[low..probe - 1].partition_point(|&value| predicate(value));
            }
        }
    } else {
        // The answer is at most `high`.
        let mut high = hint;
        let mut step = 1;
        loop {
            if step > high {
                return values[..high].partition_point(|&value| predicate(value));
            }
            let probe = high - step;
            if predicate(values[probe]) {
                return probe
                    + 1
                    + values[probe + 1..high].partition_point(|&value| predicate(value));
            }
            high = probe;
            step *= 2;
        }
    }
}

/// `k` non-decreasing initial centroids for non-empty sorted data.
fn initial_centroids(sorted: &SortedValues, options: &KMeansOptions) -> Vec<f64> {
    let clusters = options.clusters;
    let values = &sorted.values;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut centroids = match options.init {
        Init::Linear => {
            let (min, max) = (sorted.min(), sorted.max());
            if clusters == 1 {
                vec![(min + max) * 0.5]
            } else {
                (0..clusters)
                    .map(|i| min + (max - min) * i as f64 / (clusters - 1) as f64)
                    .collect()
            }
        }
        Init::Density => {
            let count = values.len() as u128;
            (0..clusters)
                .map(|i| {
                    let rank = ((2 * i as u128 + 1) * count) / (2 * clusters as u128);
                    f64::from(values[(rank as usize).min(values.len() - 1)])
                })
                .collect()
        }
        Init::Random => forgy(values, clusters, &mut rng),
        Init::KMeansPlusPlus => kmeans_plus_plus(values, clusters, &mut rng),
    };
    centroids.sort_by(f64::total_cmp);
    centroids
}

/// Uniform integer in `0..bound` (`bound > 0`), unbiased by rejection.
fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    // 2^64 mod bound: draws below it would over-represent small results.
    let rejected = bound.wrapping_neg() % bound;
    loop {
        let draw = rng.next_u64();
        if draw >= rejected {
            return draw % bound;
        }
    }
}

/// Uniform `f64` in `[0, 1)` with 53 random bits.
fn unit_interval(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Forgy: `clusters` distinct values drawn uniformly among the distinct values (Floyd's
/// sampling), ascending; padded with the largest value when there are too few distinct values.
fn forgy(sorted: &[f32], clusters: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut distinct: Vec<f32> = sorted.to_vec();
    distinct.dedup_by(|a, b| a == b);
    let mut centroids: Vec<f64> = if distinct.len() <= clusters {
        distinct.iter().map(|&value| f64::from(value)).collect()
    } else {
        let total = distinct.len();
        let mut picked = BTreeSet::new();
        for j in total - clusters..total {
            let candidate = uniform_below(rng, j as u64 + 1) as usize;
            if !picked.insert(candidate) {
                picked.insert(j);
            }
        }
        picked
            .into_iter()
            .map(|index| f64::from(distinct[index]))
            .collect()
    };
    pad_with_largest(&mut centroids, clusters);
    centroids
}

fn pad_with_largest(centroids: &mut Vec<f64>, clusters: usize) {
    if let Some(&largest) = centroids.last() {
        centroids.resize(clusters, largest);
    }
}

/// k-means++ seeding over sorted data. `nearest_squared[i]` is the squared distance from value
/// `i` to the nearest chosen centroid; block sums of it make each draw O(n / BLOCK + BLOCK), and
/// a new centroid only lowers distances between the midpoints to its chosen neighbours, a
/// contiguous run of the sorted values.
fn kmeans_plus_plus(sorted: &[f32], clusters: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    const BLOCK: usize = 4096;
    let first = f64::from(sorted[uniform_below(rng, sorted.len() as u64) as usize]);
    // Chosen centroids, ascending and distinct.
    let mut chosen = vec![first];
    let mut nearest_squared: Vec<f64> = sorted
        .iter()
        .map(|&value| (f64::from(value) - first).powi(2))
        .collect();
    let mut block_sums: Vec<f64> = nearest_squared
        .chunks(BLOCK)
        .map(|block| block.iter().sum())
        .collect();

    while chosen.len() < clusters {
        let total: f64 = block_sums.iter().sum();
        if total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            break; // every value coincides with a chosen centroid
        }
        let target = unit_interval(rng) * total;
        let Some(index) = sample_weighted(&nearest_squared, &block_sums, BLOCK, target) else {
            break;
        };
        let centroid = f64::from(sorted[index]);
        let position = chosen.partition_point(|&c| c < centroid);
        // Values that may now be nearer to the new centroid: between the midpoints to its
        // neighbours (inclusive on both sides; taking the minimum is idempotent).
        let start = match position.checked_sub(1) {
            Some(left) => {
                let midpoint = (chosen[left] + centroid) * 0.5;
                sorted.partition_point(|&value| f64::from(value) < midpoint)
            }
            None => 0,
        };
        let end = match chosen.get(position) {
            Some(&right) => {
                let midpoint = (centroid + right) * 0.5;
                sorted.partition_point(|&value| f64::from(value) <= midpoint)
            }
            None => sorted.len(),
        };
        for (distance, &value) in nearest_squared[start..end]
            .iter_mut()
            .zip(&sorted[start..end])
        {
            *distance = distance.min((f64::from(value) - centroid).powi(2));
        }
        if end > start {
            let blocks = start / BLOCK..(end - 1) / BLOCK + 1;
            let touched = nearest_squared[blocks.start * BLOCK..].chunks(BLOCK);
            for (sum, block) in block_sums[blocks].iter_mut().zip(touched) {
                *sum = block.iter().sum();
            }
        }
        chosen.insert(position, centroid);
    }
    pad_with_largest(&mut chosen, clusters);
    chosen
}

/// Index `i` with `weights[i] > 0` where the running sum of `weights` first exceeds `target`;
/// when rounding puts `target` past the end, the last positive weight. `None` if all are zero.
fn sample_weighted(
    weights: &[f64],
    block_sums: &[f64],
    block: usize,
    target: f64,
) -> Option<usize> {
    let mut running = 0.0;
    let mut last_positive_block = None;
    for (index, &sum) in block_sums.iter().enumerate() {
        if sum <= 0.0 {
            continue;
        }
        last_positive_block = Some(index);
        if running + sum > target {
            let range = index * block..((index + 1) * block).min(weights.len());
            let mut inner = running;
            for i in range.clone() {
                inner += weights[i];
                if inner > target && weights[i] > 0.0 {
                    return Some(i);
                }
            }
            return range.rev().find(|&i| weights[i] > 0.0);
        }
        running += sum;
    }
    let index = last_positive_block?;
    (index * block..((index + 1) * block).min(weights.len()))
        .rev()
        .find(|&i| weights[i] > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic test data: a bimodal mix like pruned weights plus a uniform background.
    fn pruned_like(count: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|i| {
                let u = unit_interval(&mut rng);
                let magnitude = 0.02 + 0.05 * u * u;
                let sign = if rng.next_u64() & 1 == 0 { -1.0 } else { 1.0 };
                if i % 10 == 0 {
                    (unit_interval(&mut rng) * 0.2 - 0.1) as f32
                } else {
                    (sign * magnitude) as f32
                }
            })
            .collect()
    }

    /// A plain Lloyd implementation, O(nk) per iteration, written without sorting or prefix
    /// sums: the oracle for `kmeans_1d` with linear initialisation.
    fn reference_lloyd(
        values: &[f32],
        clusters: usize,
        tolerance: f64,
        max_iterations: usize,
    ) -> (Vec<f64>, usize) {
        let min = values
            .iter()
            .fold(f64::INFINITY, |m, &v| m.min(f64::from(v)));
        let max = values
            .iter()
            .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
        let mut centroids: Vec<f64> = if clusters == 1 {
            vec![(min + max) / 2.0]
        } else {
            (0..clusters)
                .map(|i| min + (max - min) * i as f64 / (clusters - 1) as f64)
                .collect()
        };
        for iteration in 1..=max_iterations {
            let mut sums = vec![0.0f64; clusters];
            let mut counts = vec![0usize; clusters];
            for &value in values {
                let value = f64::from(value);
                let mut best = 0;
                for c in 1..clusters {
                    if (value - centroids[c]).abs() < (value - centroids[best]).abs() {
                        best = c;
                    }
                }
                sums[best] += value;
                counts[best] += 1;
            }
            let mut largest_move = 0.0f64;
            for c in 0..clusters {
                if counts[c] > 0 {
                    let mean = sums[c] / counts[c] as f64;
                    largest_move = largest_move.max((mean - centroids[c]).abs());
                    centroids[c] = mean;
                }
            }
            if largest_move <= tolerance * (max - min) {
                return (centroids, iteration);
            }
        }
        (centroids, max_iterations)
    }

    fn assert_nearest(values: &[f32], clustering: &Clustering) {
        assert_eq!(values.len(), clustering.codes.len());
        for (&value, &code) in values.iter().zip(&clustering.codes) {
            let value = f64::from(value);
            let code = usize::from(code);
            let distance = |c: usize| (value - f64::from(clustering.centroids[c])).abs();
            for other in 0..clustering.centroids.len() {
                assert!(
                    distance(code) <= distance(other),
                    "value {value}: code {code} is not nearest"
                );
                if other < code {
                    assert!(
                        distance(other) > distance(code),
                        "value {value}: tie not given to the lower code"
                    );
                }
            }
        }
    }

    fn assert_well_formed(values: &[f32], clustering: &Clustering, clusters: usize) {
        assert_eq!(clustering.centroids.len(), clusters);
        assert!(
            clustering
                .centroids
                .windows(2)
                .all(|pair| pair[0] <= pair[1])
        );
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!(clustering.centroids.iter().all(|&c| min <= c && c <= max));
        assert_nearest(values, clustering);
    }

    #[test]
    fn matches_reference_lloyd_on_random_data() {
        for (seed, clusters) in [(1, 2), (2, 8), (3, 16), (4, 32), (5, 64)] {
            let values = pruned_like(20_000, seed);
            let options = KMeansOptions {
                max_iterations: 500,
                ..KMeansOptions::new(clusters)
            };
            let clustering = kmeans_1d(&values, &options).unwrap();
            let (expected, iterations) =
                reference_lloyd(&values, clusters, options.tolerance, options.max_iterations);
            assert_eq!(clustering.iterations, iterations, "k = {clusters}");
            for (got, want) in clustering.centroids.iter().zip(&expected) {
                assert!(
                    (f64::from(*got) - want).abs() <= 1e-5,
                    "k = {clusters}: {got} vs {want}"
                );
            }
            assert_well_formed(&values, &clustering, clusters);
        }
    }

    #[test]
    fn converges_on_separated_groups() {
        let mut values = Vec::new();
        for (center, count) in [(-1.0f32, 100), (0.0, 50), (2.0, 80)] {
            for i in 0..count {
                values.push(center + (i as f32 - count as f32 / 2.0) * 1e-4);
            }
        }
        let clustering = kmeans_1d(&values, &KMeansOptions::new(3)).unwrap();
        assert!(clustering.converged);
        let expected = [-1.0f32, 0.0, 2.0];
        for (got, want) in clustering.centroids.iter().zip(expected) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
        assert_eq!(clustering.codes[0], 0);
        assert_eq!(clustering.codes[150], 2);
    }

    #[test]
    fn empty_input_gives_empty_clustering() {
        let clustering = kmeans_1d(&[], &KMeansOptions::new(4)).unwrap();
        assert!(clustering.centroids.is_empty() && clustering.codes.is_empty());
        assert!(clustering.converged);
        assert_eq!(clustering.iterations, 0);
    }

    #[test]
    fn one_distinct_value_uses_code_zero() {
        let values = vec![0.25f32; 1000];
        for init in [
            Init::Linear,
            Init::Density,
            Init::Random,
            Init::KMeansPlusPlus,
        ] {
            let options = KMeansOptions {
                init,
                ..KMeansOptions::new(8)
            };
            let clustering = kmeans_1d(&values, &options).unwrap();
            assert!(clustering.centroids.iter().all(|&c| c == 0.25), "{init:?}");
            assert!(clustering.codes.iter().all(|&code| code == 0), "{init:?}");
            assert!(clustering.converged);
            assert_eq!(clustering.iterations, 1);
        }
    }

    #[test]
    fn more_clusters_than_values() {
        let values = [3.0f32, -1.0, 2.0];
        for init in [
            Init::Linear,
            Init::Density,
            Init::Random,
            Init::KMeansPlusPlus,
        ] {
            let options = KMeansOptions {
                init,
                ..KMeansOptions::new(10)
            };
            let clustering = kmeans_1d(&values, &options).unwrap();
            assert_well_formed(&values, &clustering, 10);
            for (&value, &code) in values.iter().zip(&clustering.codes) {
                assert_eq!(clustering.centroids[usize::from(code)], value, "{init:?}");
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        let options = KMeansOptions::new(4);
        assert!(matches!(
            kmeans_1d(&[1.0, f32::NAN], &options),
            Err(KMeansError::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            kmeans_1d(&[f32::NEG_INFINITY], &options),
            Err(KMeansError::NonFinite { index: 0, .. })
        ));
        assert_eq!(
            kmeans_1d(&[1.0], &KMeansOptions::new(0)),
            Err(KMeansError::NoClusters)
        );
        assert_eq!(
            kmeans_1d(&[1.0], &KMeansOptions::new(MAX_CLUSTERS + 1)),
            Err(KMeansError::TooManyClusters {
                clusters: MAX_CLUSTERS + 1
            })
        );
        for tolerance in [-1.0, f64::NAN, f64::INFINITY] {
            let options = KMeansOptions {
                tolerance,
                ..KMeansOptions::new(2)
            };
            assert!(matches!(
                kmeans_1d(&[1.0], &options),
                Err(KMeansError::InvalidTolerance { .. })
            ));
        }
    }

    #[test]
    fn max_clusters_is_accepted() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let options = KMeansOptions {
            max_iterations: 3,
            ..KMeansOptions::new(MAX_CLUSTERS)
        };
        let clustering = kmeans_1d(&values, &options).unwrap();
        assert_eq!(clustering.centroids.len(), MAX_CLUSTERS);
        assert_nearest(&values, &clustering);
    }

    #[test]
    fn linear_and_density_initialisations() {
        let values: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        let initial = |init| {
            let options = KMeansOptions {
                init,
                max_iterations: 0,
                ..KMeansOptions::new(5)
            };
            kmeans_1d(&values, &options).unwrap()
        };
        let linear = initial(Init::Linear);
        assert_eq!(linear.centroids, vec![0.0, 25.0, 50.0, 75.0, 100.0]);
        assert!(!linear.converged);
        assert_eq!(linear.iterations, 0);
        // Ranks ⌊(i + ½)·101/5⌋ = 10, 30, 50, 70, 90.
        assert_eq!(
            initial(Init::Density).centroids,
            vec![10.0, 30.0, 50.0, 70.0, 90.0]
        );
        // Density follows the mass: a dense cluster near zero attracts most centroids.
        let mut skewed: Vec<f32> = (0..1000).map(|i| i as f32 * 1e-3).collect();
        skewed.push(100.0);
        let options = KMeansOptions {
            init: Init::Density,
            max_iterations: 0,
            ..KMeansOptions::new(4)
        };
        assert!(
            kmeans_1d(&skewed, &options)
                .unwrap()
                .centroids
                .iter()
                .all(|&c| c < 1.0)
        );
    }

    #[test]
    fn random_initialisations_pick_distinct_data_values_deterministically() {
        let values = pruned_like(5000, 9);
        for init in [Init::Random, Init::KMeansPlusPlus] {
            let options = KMeansOptions {
                init,
                max_iterations: 0,
                seed: 42,
                ..KMeansOptions::new(16)
            };
            let first = kmeans_1d(&values, &options).unwrap();
            assert_eq!(first, kmeans_1d(&values, &options).unwrap(), "{init:?}");
            assert!(
                first.centroids.windows(2).all(|pair| pair[0] < pair[1]),
                "{init:?}"
            );
            assert!(
                first.centroids.iter().all(|c| values.contains(c)),
                "{init:?}"
            );
            let other_seed = KMeansOptions {
                seed: 43,
                ..options
            };
            assert_ne!(
                first.centroids,
                kmeans_1d(&values, &other_seed).unwrap().centroids
            );
        }
    }

    #[test]
    fn kmeans_plus_plus_spreads_over_separated_groups() {
        // Three tight groups; D² sampling picks one centroid in each with high probability,
        // and Lloyd then finds the group means.
        let mut values = Vec::new();
        for center in [-5.0f32, 0.0, 5.0] {
            values.extend((0..200).map(|i| center + i as f32 * 1e-5));
        }
        let options = KMeansOptions {
            init: Init::KMeansPlusPlus,
            seed: 7,
            ..KMeansOptions::new(3)
        };
        let clustering = kmeans_1d(&values, &options).unwrap();
        for (got, want) in clustering.centroids.iter().zip([-5.0f32, 0.0, 5.0]) {
            assert!((got - want).abs() < 0.01, "{got} vs {want}");
        }
    }

    #[test]
    fn radix_sort_orders_signed_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut values: Vec<f32> = (0..10_000)
            .map(|_| f32::from_bits(rng.next_u32()))
            .filter(|v| v.is_finite())
            .collect();
        values.extend([
            0.0,
            -0.0,
            f32::MIN,
            f32::MAX,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
        ]);
        let mut expected = values.clone();
        expected.sort_by(f32::total_cmp);
        let sorted = radix_sort(&values);
        assert_eq!(
            sorted.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn galloping_search_agrees_with_binary_search() {
        let values: Vec<f32> = (0..300).map(|i| (i / 3) as f32).collect();
        for threshold in [-1.0f32, 0.0, 0.5, 17.0, 50.0, 99.0, 100.0] {
            let expected = values.partition_point(|&v| v <= threshold);
            for hint in [0, 1, 2, 3, 7, 150, 298, 299, 300, 1000] {
                assert_eq!(
                    partition_point_near(&values, hint, |v| v <= threshold),
                    expected
                );
            }
        }
    }

    #[test]
    fn extreme_magnitudes_stay_finite_and_ordered() {
        let values = [f32::MIN, -1.0, 0.0, 1e-30, 1.0, f32::MAX, f32::MAX];
        for init in [
            Init::Linear,
            Init::Density,
            Init::Random,
            Init::KMeansPlusPlus,
        ] {
            let options = KMeansOptions {
                init,
                ..KMeansOptions::new(4)
            };
            let clustering = kmeans_1d(&values, &options).unwrap();
            assert!(clustering.centroids.iter().all(|c| c.is_finite()));
            assert_well_formed(&values, &clustering, 4);
        }
    }

    fn any_init() -> impl Strategy<Value = Init> {
        prop_oneof![
            Just(Init::Linear),
            Just(Init::Density),
            Just(Init::Random),
            Just(Init::KMeansPlusPlus)
        ]
    }

    /// Values with many repeats (small integers scaled) or continuous ones.
    fn any_values() -> impl Strategy<Value = Vec<f32>> {
        prop_oneof![
            prop::collection::vec(-8i32..8, 0..400)
                .prop_map(|v| v.into_iter().map(|x| x as f32 * 0.5).collect()),
            prop::collection::vec(-1.0f32..1.0, 0..2000),
        ]
    }

    proptest! {
        #[test]
        fn results_are_well_formed(values in any_values(), clusters in 1usize..40, init in any_init(), seed in any::<u64>()) {
            let options = KMeansOptions { init, seed, ..KMeansOptions::new(clusters) };
            let clustering = kmeans_1d(&values, &options).unwrap();
            if values.is_empty() {
                prop_assert!(clustering.centroids.is_empty());
            } else {
                assert_well_formed(&values, &clustering, clusters);
                prop_assert!(clustering.converged);
            }
            prop_assert_eq!(&clustering, &kmeans_1d(&values, &options).unwrap());
        }

        #[test]
        fn linear_init_matches_reference(values in prop::collection::vec(-1.0f32..1.0, 1..1500), clusters in 1usize..24) {
            let options = KMeansOptions { max_iterations: 200, ..KMeansOptions::new(clusters) };
            let clustering = kmeans_1d(&values, &options).unwrap();
            let (expected, iterations) = reference_lloyd(&values, clusters, options.tolerance, options.max_iterations);
            prop_assert_eq!(clustering.iterations, iterations);
            for (got, want) in clustering.centroids.iter().zip(&expected) {
                prop_assert!((f64::from(*got) - want).abs() <= 1e-5, "{} vs {}", got, want);
            }
        }
    }
}
