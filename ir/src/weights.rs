//! The weights arena: every tensor of learned values a graph refers to, addressed by [`WeightId`].
//!
//! Invariants:
//! - A weight's values always match its type's element count. File and literal weights carry their
//!   values from construction; seeded random weights are generated on first use only
//!   ([`Weight::values`]), so describing a 138M-parameter network costs nothing until a pass or
//!   backend needs the numbers.
//! - Generation is a pure function of the [`RandomInit`]: the same values on every run and machine
//!   (ChaCha8 streams per chunk, Box–Muller through the portable `libm`).
//! - Weight equality compares name, type, provenance and encoding, never spans; values are compared
//!   where they are held (file, literal, computed) and through their generator otherwise.

use crate::encoding::Encoding;
use crate::types::{Span, TensorType};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// A handle into a graph's [`Weights`] arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightId(u32);

impl WeightId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// The distribution of a seeded generator's non-zero values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Normal { mean: f64, std: f64 },
    Uniform { low: f64, high: f64 },
}

/// `random(normal(mean, std), density = d, seed = s)`: each element is non-zero with probability
/// `density` and then drawn from `dist`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomInit {
    pub dist: Distribution,
    pub density: f64,
    pub seed: u64,
}

/// Elements generated from one ChaCha8 stream; chunk `c` uses stream `c` of the seed, so chunks
/// are generated in parallel and the values do not depend on the thread count.
const CHUNK: usize = 1 << 16;
const TWO_POW_53: f64 = 9_007_199_254_740_992.0;

/// A uniform draw in [0, 1) with 53 random bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / TWO_POW_53
}

impl RandomInit {
    /// Generates `len` values. The definition, which must not change (generated models would):
    /// for element `i` of chunk `c = i / 65536`, stream `c` of `ChaCha8Rng::seed_from_u64(seed)`
    /// yields, in order, one 53-bit uniform `u` (only when `density < 1`): the element is zero
    /// unless `u < density`; then, for a non-zero element, the value: normal by Box–Muller from two
    /// uniforms `u1, u2` as `mean + std * sqrt(-2 ln(1 - u1)) * cos(2π u2)`, or uniform as
    /// `low + (high - low) * u`. The result is rounded to f32.
    pub fn generate(&self, len: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; len];
        self.fill(&mut out);
        out
    }

    /// [`RandomInit::generate`] straight into a shared buffer: one allocation of `len` values,
    /// never a second copy (a weight's values live in an `Arc`, and `Arc::from(Vec)` would copy).
    pub fn generate_shared(&self, len: usize) -> Arc<[f32]> {
        // `repeat_n` has an exact length, so the slice is allocated once, in place.
        let mut out: Arc<[f32]> = std::iter::repeat_n(0.0f32, len).collect();
        let values = Arc::get_mut(&mut out).expect("a fresh Arc has no other owner");
        self.fill(values);
        out
    }

    fn fill(&self, out: &mut [f32]) {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, values)| self.fill_chunk(chunk as u64, values));
    }

    fn fill_chunk(&self, chunk: u64, values: &mut [f32]) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(chunk);
        for v in values {
            if self.density < 1.0 && unit(&mut rng) >= self.density {
                *v = 0.0;
                continue;
            }
            *v = match self.dist {
                Distribution::Normal { mean, std } => {
                    let u1 = unit(&mut rng);
                    let u2 = unit(&mut rng);
                    let radius = libm::sqrt(-2.0 * libm::log(1.0 - u1));
                    (mean + std * radius * libm::cos(2.0 * std::f64::consts::PI * u2)) as f32
                }
                Distribution::Uniform { low, high } => (low + (high - low) * unit(&mut rng)) as f32,
            };
        }
    }
}

/// Where a weight's values come from; this is what the text format records.
#[derive(Clone, Debug)]
pub enum WeightInit {
    /// The tensor `key` of the graph's weights file; the front end attaches the values it read.
    File { key: String },
    /// Values written in the description, row-major.
    Literal,
    /// A seeded generator, materialised lazily.
    Random(RandomInit),
    /// Values produced by a pass.
    Computed,
}

/// One named tensor of learned values.
pub struct Weight {
    pub name: String,
    pub ty: TensorType,
    pub init: WeightInit,
    pub encoding: Encoding,
    pub span: Option<Span>,
    values: OnceLock<Arc<[f32]>>,
}

/// Why values cannot become a weight.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("weight `@{name}` of type {ty} needs {expected} values, got {found}")]
pub struct ValueCountError {
    pub name: String,
    pub ty: String,
    pub expected: usize,
    pub found: usize,
}

impl Weight {
    fn with_values(
        name: String,
        ty: TensorType,
        init: WeightInit,
        values: Arc<[f32]>,
    ) -> Result<Weight, ValueCountError> {
        let expected = ty.shape.checked_len().unwrap_or(usize::MAX);
        if values.len() != expected {
            return Err(ValueCountError {
                name,
                ty: ty.to_string(),
                expected,
                found: values.len(),
            });
        }
        Ok(Weight {
            name,
            ty,
            init,
            encoding: Encoding::default(),
            span: None,
            values: OnceLock::from(values),
        })
    }

    /// A weight read from the graph's weights file under `key`.
    pub fn from_file(
        name: impl Into<String>,
        ty: TensorType,
        key: impl Into<String>,
        values: Arc<[f32]>,
    ) -> Result<Weight, ValueCountError> {
        let key = key.into();
        Weight::with_values(name.into(), ty, WeightInit::File { key }, values)
    }

    /// A weight whose values are written in the description.
    pub fn literal(
        name: impl Into<String>,
        ty: TensorType,
        values: Vec<f32>,
    ) -> Result<Weight, ValueCountError> {
        Weight::with_values(name.into(), ty, WeightInit::Literal, values.into())
    }

    /// A weight computed by a pass.
    pub fn computed(
        name: impl Into<String>,
        ty: TensorType,
        values: Vec<f32>,
    ) -> Result<Weight, ValueCountError> {
        Weight::with_values(name.into(), ty, WeightInit::Computed, values.into())
    }

    /// A seeded random weight; nothing is generated until [`Weight::values`] is called.
    pub fn random(name: impl Into<String>, ty: TensorType, init: RandomInit) -> Weight {
        Weight {
            name: name.into(),
            ty,
            init: WeightInit::Random(init),
            encoding: Encoding::default(),
            span: None,
            values: OnceLock::new(),
        }
    }

    /// Replaces the values with ones a pass computed; the weight's provenance becomes
    /// [`WeightInit::Computed`]. The encoding is the caller's to update.
    pub fn set_computed(&mut self, values: Arc<[f32]>) -> Result<(), ValueCountError> {
        let expected = self.ty.shape.checked_len().unwrap_or(usize::MAX);
        if values.len() != expected {
            return Err(ValueCountError {
                name: self.name.clone(),
                ty: self.ty.to_string(),
                expected,
                found: values.len(),
            });
        }
        self.init = WeightInit::Computed;
        self.values = OnceLock::from(values);
        Ok(())
    }

    /// The values for a pass to change in place; the provenance becomes
    /// [`WeightInit::Computed`]. The buffer is copied first only if someone else still holds it
    /// (a clone of the graph, or an `Arc` from [`Weight::values`]), so a pass that drops its
    /// handles first rewrites a layer without allocating.
    pub fn values_mut(&mut self) -> &mut [f32] {
        self.values();
        self.init = WeightInit::Computed;
        let arc = self.values.get_mut().expect("materialised just above");
        Arc::make_mut(arc)
    }

    pub fn with_span(mut self, span: Span) -> Weight {
        self.span = Some(span);
        self
    }

    /// The values, row-major; a random weight is generated on the first call and kept.
    pub fn values(&self) -> Arc<[f32]> {
        self.values
            .get_or_init(|| match &self.init {
                WeightInit::Random(r) => r.generate_shared(self.ty.shape.len()),
                // Constructors attach values to every other kind of weight.
                WeightInit::File { .. } | WeightInit::Literal | WeightInit::Computed => {
                    unreachable!("weight values are attached at construction")
                }
            })
            .clone()
    }

    /// Whether the values are in memory (always, except for a random weight not yet used).
    pub fn is_materialized(&self) -> bool {
        self.values.get().is_some()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.ty.shape.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Clone for Weight {
    fn clone(&self) -> Weight {
        Weight {
            name: self.name.clone(),
            ty: self.ty.clone(),
            init: self.init.clone(),
            encoding: self.encoding.clone(),
            span: self.span,
            values: self.values.clone(),
        }
    }
}

impl fmt::Debug for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Weight")
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("init", &self.init)
            .field("encoding", &self.encoding)
            .field("materialized", &self.is_materialized())
            .finish()
    }
}

/// Whether two value slices are equal bit for bit (so NaNs and signed zeros count).
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl PartialEq for Weight {
    fn eq(&self, other: &Weight) -> bool {
        let same_init = match (&self.init, &other.init) {
            (WeightInit::Random(a), WeightInit::Random(b)) => a == b,
            (WeightInit::File { key: a }, WeightInit::File { key: b }) => {
                a == b && same_bits(&self.values(), &other.values())
            }
            (WeightInit::Literal, WeightInit::Literal)
            | (WeightInit::Computed, WeightInit::Computed) => {
                same_bits(&self.values(), &other.values())
            }
            _ => false,
        };
        self.name == other.name
            && self.ty == other.ty
            && self.encoding == other.encoding
            && same_init
    }
}

/// The arena. Handles are dense indices; weights are never removed while a graph refers to them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    items: Vec<Weight>,
}

impl Weights {
    pub fn add(&mut self, weight: Weight) -> WeightId {
        let id = WeightId(u32::try_from(self.items.len()).expect("fewer than 2^32 weights"));
        self.items.push(weight);
        id
    }

    pub fn get(&self, id: WeightId) -> &Weight {
        &self.items[id.index()]
    }

    pub fn get_mut(&mut self, id: WeightId) -> &mut Weight {
        &mut self.items[id.index()]
    }

    pub fn find(&self, name: &str) -> Option<WeightId> {
        self.iter().find(|(_, w)| w.name == name).map(|(id, _)| id)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (WeightId, &Weight)> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, w)| (WeightId(i as u32), w))
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Total number of parameters (dense-equivalent element count).
    pub fn parameter_count(&self) -> u64 {
        self.items.iter().map(|w| w.len() as u64).sum()
    }
}

impl std::ops::Index<WeightId> for Weights {
    type Output = Weight;
    fn index(&self, id: WeightId) -> &Weight {
        self.get(id)
    }
}
