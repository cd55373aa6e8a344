//! Matrix × vector over the packed layout: threads over row slices (walking columns) or over
//! ranges of row chunks (walking rows), bias and activation fused. The threads are a small fixed
//! pool ([`crate::pool`]) whose workers spin between jobs, and the calling thread takes items too.
//!
//! Contract: `y = f(W x + b)` where every output is the sum of its row's terms in increasing
//! column order starting from zero, then the bias, then `f`: the interpreter's order, so a
//! product equals the interpreter's `dense` (then its activation) for any thread count and any
//! kernel variant. Zero entries of `x` are skipped.

use crate::CpuError;
use crate::isa::Isa;
use crate::kernels::{self, Active};
use crate::layout::{PackedMatrix, Traversal};
use crate::pool::Pool;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

/// Row-chunk ranges per thread of a product that walks rows (see [`PackedMatrix::matvec_active`]).
const ROW_ITEMS_PER_THREAD: usize = 4;

/// How kernels run: which instruction set, and how many threads.
#[derive(Debug)]
pub struct Runtime {
    isa: Isa,
    traversal: Traversal,
    threads: usize,
    pool: Option<Pool>,
}

impl Runtime {
    /// A runtime with `threads` worker threads (1: the caller's thread only) using `isa`, which
    /// must be supported by this machine.
    pub fn new(isa: Isa, threads: usize) -> Result<Runtime, CpuError> {
        if !isa.is_supported() {
            return Err(CpuError::UnsupportedIsa(isa));
        }
        let threads = threads.max(1);
        let pool = if threads > 1 {
            Some(Pool::new(threads).map_err(|e| CpuError::Threads(e.to_string()))?)
        } else {
            None
        };
        Ok(Runtime {
            isa,
            traversal: Traversal::Auto,
            threads,
            pool,
        })
    }

    /// This runtime walking sparse matrices by `traversal` (by default [`Traversal::Auto`]).
    pub fn with_traversal(mut self, traversal: Traversal) -> Runtime {
        self.traversal = traversal;
        self
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn traversal(&self) -> Traversal {
        self.traversal
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i)` for `i in 0..n`, spread over the caller's and the pool's threads, and
    /// collects the results in order.
    pub fn map<T: Send>(&self, n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
        match &self.pool {
            Some(pool) if n > 1 => pool.map(n, f),
            _ => (0..n).map(f).collect(),
        }
    }
}

/// The activation applied to each output after the bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    Relu,
}

impl Activation {
    /// Output `r` from its sum `v`: plus its bias (when there is one), then the activation.
    #[inline]
    pub fn output(self, v: f32, bias: Option<&[f32]>, r: usize) -> f32 {
        self.apply(match bias {
            Some(b) => v + b[r],
            None => v,
        })
    }

    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => {
                if v < 0.0 {
                    0.0
                } else {
                    v
                }
            }
        }
    }
}

impl PackedMatrix {
    /// `y = act(W x + bias)`. Panics when `x`, `y` or `bias` do not match the matrix's shape.
    pub fn matvec(
        &self,
        rt: &Runtime,
        x: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
        y: &mut [f32],
    ) {
        assert_eq!(x.len(), self.cols(), "one input per column");
        let mut active = Active::default();
        // An input without zeros walked by rows needs no list of its non-zeros.
        if x.iter().all(|&v| v != 0.0)
            && self.pick_traversal(rt.traversal, || self.entries()) == Traversal::Rows
        {
            self.product(rt, &active, Some(x), Traversal::Rows, bias, act, y);
            return;
        }
        active.collect(x);
        let traversal = self.resolve(rt.traversal, &active, true);
        self.product(rt, &active, Some(x), traversal, bias, act, y);
    }

    /// [`PackedMatrix::matvec`] with the non-zero inputs already collected.
    pub fn matvec_active(
        &self,
        rt: &Runtime,
        active: &Active,
        bias: Option<&[f32]>,
        act: Activation,
        y: &mut [f32],
    ) {
        let whole = self.whole_input(active);
        let traversal = self.resolve(rt.traversal, active, whole.is_some());
        self.product(rt, active, whole, traversal, bias, act, y);
    }

    /// `y = act(W x + bias)` walking `traversal` (rows only with the whole input `whole`).
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        rt: &Runtime,
        active: &Active,
        whole: Option<&[f32]>,
        traversal: Traversal,
        bias: Option<&[f32]>,
        act: Activation,
        y: &mut [f32],
    ) {
        assert_eq!(y.len(), self.rows(), "one output per row");
        assert!(
            bias.is_none_or(|b| b.len() == self.rows()),
            "one bias per row"
        );
        let slices = self.slices();
        let finish = |s: usize, acc: &mut [f32]| {
            for (v, &r) in acc.iter_mut().zip(slices[s].rows()) {
                *v = act.output(*v, bias, r as usize);
            }
        };
        if slices.len() == 1 && slices[0].rows().len() == y.len() {
            // One slice holds every row in order: accumulate in place.
            y.fill(0.0);
            self.accumulate(rt.isa, traversal, 0, active, whole, y);
            finish(0, y);
            return;
        }
        // Work items: a slice's columns, or a range of a slice's row chunks. Rows are cut finer
        // than slices so that a thread that starts late leaves its share to the others.
        let items: Vec<(usize, Option<Range<usize>>)> = if traversal == Traversal::Rows {
            let per_slice = match rt.threads() {
                1 => 1,
                threads => (threads * ROW_ITEMS_PER_THREAD).div_ceil(slices.len()),
            };
            slices
                .iter()
                .enumerate()
                .flat_map(|(s, slice)| {
                    let rc = slice.row_chunks().expect("rows are walked only when built");
                    rc.split(per_slice).into_iter().map(move |c| (s, Some(c)))
                })
                .collect()
        } else {
            (0..slices.len()).map(|s| (s, None)).collect()
        };
        // The outputs as atomics, so that each item writes its own rows from whichever thread
        // runs it (relaxed stores are plain stores; the pool's join, released by each worker and
        // acquired here, orders them before this call returns).
        // SAFETY: AtomicU32 has the size and alignment of u32, hence of f32; `y` is borrowed
        // mutably for this whole call, so nothing else reads or writes it meanwhile.
        let out: &[AtomicU32] = unsafe { &*(y as *mut [f32] as *const [AtomicU32]) };
        rt.map(items.len(), |i| {
            let (s, chunks) = &items[i];
            let slice = &slices[*s];
            let mut acc = vec![0.0f32; slice.rows().len()];
            let write = |local: usize, v: f32| {
                let r = slice.rows()[local] as usize;
                out[r].store(act.output(v, bias, r).to_bits(), Ordering::Relaxed);
            };
            match chunks {
                Some(c) => {
                    let x = whole.expect("rows are walked with the whole input");
                    kernels::accumulate_rows(rt.isa, self, *s, c.clone(), x, &mut acc);
                    let rc = slice.row_chunks().expect("rows are walked only when built");
                    if c.start == 0 && c.end == rc.chunks().len() {
                        // The whole slice: every row, written in row order.
                        acc.iter()
                            .enumerate()
                            .for_each(|(local, &v)| write(local, v));
                    } else {
                        // Some chunks: their lanes' rows.
                        for chunk in c.clone() {
                            for &local in rc.chunk_rows(chunk, acc.len()) {
                                write(local as usize, acc[local as usize]);
                            }
                        }
                    }
                }
                None => {
                    kernels::accumulate(rt.isa, self, *s, active, &mut acc);
                    acc.iter()
                        .enumerate()
                        .for_each(|(local, &v)| write(local, v));
                }
            }
        });
    }

    /// The whole input vector `active` carries, when it carries one.
    fn whole_input<'a>(&self, active: &'a Active) -> Option<&'a [f32]> {
        (active.dense.len() == self.cols()).then_some(active.dense.as_slice())
    }

    /// The traversal a product takes: `wanted` as [`PackedMatrix::traversal_for`] resolves
    /// it, and columns when the whole input vector is not at hand.
    fn resolve(&self, wanted: Traversal, active: &Active, whole: bool) -> Traversal {
        match self.traversal_for(wanted, &active.index) {
            Traversal::Rows if whole => Traversal::Rows,
            _ => Traversal::Columns,
        }
    }

    /// Accumulates slice `s` by the resolved `traversal`.
    fn accumulate(
        &self,
        isa: Isa,
        traversal: Traversal,
        s: usize,
        active: &Active,
        whole: Option<&[f32]>,
        acc: &mut [f32],
    ) {
        if traversal == Traversal::Rows {
            let chunks = self.slices()[s]
                .row_chunks()
                .map_or(0, |rc| rc.chunks().len());
            let x = whole.expect("rows are walked with the whole input");
            kernels::accumulate_rows(isa, self, s, 0..chunks, x, acc);
        } else {
            kernels::accumulate(isa, self, s, active, acc);
        }
    }

    /// `out = act(W x + bias)` with only this thread, every slice in turn; `acc` is scratch.
    pub fn matvec_serial(
        &self,
        isa: Isa,
        active: &Active,
        bias: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
        acc: &mut Vec<f32>,
    ) {
        assert_eq!(out.len(), self.rows(), "one output per row");
        let whole = self.whole_input(active);
        let traversal = self.resolve(Traversal::Auto, active, whole.is_some());
        for (s, slice) in self.slices().iter().enumerate() {
            acc.clear();
            acc.resize(slice.rows().len(), 0.0);
            self.accumulate(isa, traversal, s, active, whole, acc);
            for (&v, &r) in acc.iter().zip(slice.rows()) {
                out[r as usize] = act.output(v, bias, r as usize);
            }
        }
    }
}
