//! The LSTM on the packed layout: per step the gate products over the four gate blocks
//! (i, o, f, c), then the element-wise cell update. Separate weights (`lstm`) take two sparse
//! products, `W x_t` and `R h`; stacked weights (`lstm_stacked`, ESE's layout) take one,
//! `S · [x_t; h; 1]`.
//!
//! Contract: ONNX semantics as in `sprig_ir::op::Lstm`; a separate gate is
//! `((W x_t + Wb) + R h) + Rb` with both products summed in increasing column order from zero, a
//! stacked gate is its row's sum in column order: the interpreter's order. Zero inputs and zero
//! hidden values are skipped.

use crate::CpuError;
use crate::kernels::Active;
use crate::layout::{MatrixSource, PackedMatrix};
use crate::matvec::{Activation, Runtime};
use crate::ops::sigmoid_value;
use sprig_ir::Weight;

/// The gate weights.
#[derive(Debug)]
enum Gates {
    Separate {
        w: PackedMatrix,
        r: PackedMatrix,
        /// `[8h]`: input biases, then recurrent biases.
        b: Option<Vec<f32>>,
    },
    /// `[4h, in + h + 1]`.
    Stacked(PackedMatrix),
}

#[derive(Debug)]
pub struct PackedLstm {
    gates: Gates,
    h0: Option<Vec<f32>>,
    c0: Option<Vec<f32>>,
    hidden: usize,
    last: bool,
}

impl PackedLstm {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        w: &Weight,
        r: &Weight,
        b: Option<&Weight>,
        h0: Option<&Weight>,
        c0: Option<&Weight>,
        last: bool,
        threads: usize,
    ) -> Result<PackedLstm, CpuError> {
        let (gates, inp) = (w.ty.shape.dims()[0], w.ty.shape.dims()[1]);
        let hidden = gates / 4;
        let wv = w.values();
        let rv = r.values();
        Ok(PackedLstm {
            gates: Gates::Separate {
                w: PackedMatrix::build(MatrixSource::whole(w, &wv, gates, inp), threads)?,
                r: PackedMatrix::build(MatrixSource::whole(r, &rv, gates, hidden), threads)?,
                b: b.map(|b| b.values().to_vec()),
            },
            h0: h0.map(|v| v.values().to_vec()),
            c0: c0.map(|v| v.values().to_vec()),
            hidden,
            last,
        })
    }

    /// An LSTM whose gates are one stacked `[4h, in + h + 1]` matrix.
    pub fn build_stacked(
        weight: &Weight,
        h0: Option<&Weight>,
        c0: Option<&Weight>,
        last: bool,
        threads: usize,
    ) -> Result<PackedLstm, CpuError> {
        let (rows, cols) = (weight.ty.shape.dims()[0], weight.ty.shape.dims()[1]);
        let values = weight.values();
        Ok(PackedLstm {
            gates: Gates::Stacked(PackedMatrix::build(
                MatrixSource::whole(weight, &values, rows, cols),
                threads,
            )?),
            h0: h0.map(|v| v.values().to_vec()),
            c0: c0.map(|v| v.values().to_vec()),
            hidden: rows / 4,
            last,
        })
    }

    pub fn matrices(&self) -> Vec<&PackedMatrix> {
        match &self.gates {
            Gates::Separate { w, r, .. } => vec![w, r],
            Gates::Stacked(s) => vec![s],
        }
    }

    /// Runs on `x` (`[seq, in]` or `[seq, batch, in]`, given as `dims`).
    pub fn run(&self, rt: &Runtime, x: &[f32], dims: &[usize]) -> Vec<f32> {
        let (seq, inp) = (dims[0], dims[dims.len() - 1]);
        let batch = if dims.len() == 3 { dims[1] } else { 1 };
        let h = self.hidden;
        let initial = |s: &Option<Vec<f32>>| -> Vec<f32> {
            match s {
                Some(s) if s.len() == h => s.repeat(batch),
                Some(s) => s.clone(),
                None => vec![0.0; batch * h],
            }
        };
        let (mut hs, mut cs) = (initial(&self.h0), initial(&self.c0));
        let mut y = Vec::with_capacity(if self.last {
            batch * h
        } else {
            seq * batch * h
        });
        let (mut gw, mut gr) = (vec![0.0f32; 4 * h], vec![0.0f32; 4 * h]);
        let mut active = Active::default();
        let mut stacked_input = Vec::new();
        for t in 0..seq {
            for bi in 0..batch {
                let xt = &x[(t * batch + bi) * inp..(t * batch + bi + 1) * inp];
                let hp = &hs[bi * h..(bi + 1) * h];
                match &self.gates {
                    Gates::Separate { w, r, b } => {
                        active.gather(xt);
                        w.matvec_active(rt, &active, None, Activation::Identity, &mut gw);
                        active.gather(hp);
                        r.matvec_active(rt, &active, None, Activation::Identity, &mut gr);
                        if let Some(b) = b {
                            for j in 0..4 * h {
                                gw[j] = gw[j] + b[j] + gr[j] + b[4 * h + j];
                            }
                        } else {
                            for (g, &r) in gw.iter_mut().zip(&gr) {
                                *g += r;
                            }
                        }
                    }
                    Gates::Stacked(s) => {
                        stacked_input.clear();
                        stacked_input.extend_from_slice(xt);
                        stacked_input.extend_from_slice(hp);
                        stacked_input.push(1.0);
                        active.gather(&stacked_input);
                        s.matvec_active(rt, &active, None, Activation::Identity, &mut gw);
                    }
                }
                for k in 0..h {
                    let i = sigmoid_value(gw[k]);
                    let o = sigmoid_value(gw[h + k]);
                    let f = sigmoid_value(gw[2 * h + k]);
                    let c = gw[3 * h + k].tanh();
                    let cell = f * cs[bi * h + k] + i * c;
                    cs[bi * h + k] = cell;
                    hs[bi * h + k] = o * cell.tanh();
                }
            }
            if !self.last {
                y.extend_from_slice(&hs);
            }
        }
        if self.last {
            return hs;
        }
        y
    }
}
