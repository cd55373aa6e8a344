//! conv2d on the packed layout: each group's filters are a `[out/groups, in/groups·kh·kw]` matrix;
//! every output position multiplies it by its receptive field, gathered straight into the list
//! of non-zero inputs (padding and zero activations never enter it).
//!
//! Contract: each output is its filter's dot product with its receptive field, terms in
//! (channel, ky, kx) order from zero, then the bias, then the fused activation: the
//! interpreter's order. Output positions are spread over the runtime's threads.

use crate::CpuError;
use crate::kernels::Active;
use crate::layout::{MatrixSource, PackedMatrix};
use crate::matvec::{Activation, Runtime};
use sprig_ir::Weight;
use sprig_ir::op::Conv2d;

/// A convolution ready to run.
#[derive(Debug)]
pub struct PackedConv {
    /// One matrix per group.
    groups: Vec<PackedMatrix>,
    bias: Option<Vec<f32>>,
    /// `[out, in/groups, kh, kw]`.
    dims: [usize; 4],
    stride: [usize; 2],
    padding: [usize; 4],
    dilation: [usize; 2],
    pub(crate) act: Activation,
}

impl PackedConv {
    pub fn build(
        weight: &Weight,
        bias: Option<&Weight>,
        c: &Conv2d,
        threads: usize,
    ) -> Result<PackedConv, CpuError> {
        let d = weight.ty.shape.dims();
        let dims = [d[0], d[1], d[2], d[3]];
        let values = weight.values();
        let og = dims[0] / c.groups.max(1);
        let k = dims[1] * dims[2] * dims[3];
        let groups = (0..c.groups)
            .map(|g| {
                PackedMatrix::build_columns(
                    MatrixSource {
                        values: &values,
                        encoding: &weight.encoding,
                        first_row: g * og,
                        rows: og,
                        cols: k,
                    },
                    threads,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(PackedConv {
            groups,
            bias: bias.map(|b| b.values().to_vec()),
            dims,
            stride: c.stride,
            padding: c.padding,
            dilation: c.dilation,
            act: Activation::Identity,
        })
    }

    pub fn matrices(&self) -> &[PackedMatrix] {
        &self.groups
    }

    /// Runs on `x` (`[C, H, W]` or `[N, C, H, W]`, given as `dims`); `out` is `[.., O, oh, ow]`.
    pub fn run(&self, rt: &Runtime, x: &[f32], dims: &[usize], [oh, ow]: [usize; 2]) -> Vec<f32> {
        let r = dims.len();
        let (n, ch, h, w) = (
            dims[..r - 3].iter().product::<usize>(),
            dims[r - 3],
            dims[r - 2],
            dims[r - 1],
        );
        let [o_ch, cg, kh, kw] = self.dims;
        let groups = self.groups.len();
        let og = o_ch / groups;
        let positions = oh * ow;
        let mut y = vec![0.0f32; n * o_ch * positions];
        // Work items: (sample, group, block of output rows).
        let rows_per_block = (oh / (4 * rt.threads())).max(1);
        let blocks = oh.div_ceil(rows_per_block);
        let items = n * groups * blocks;
        let parts = rt.map(items, |item| {
            let (ni, rest) = (item / (groups * blocks), item % (groups * blocks));
            let (g, b) = (rest / blocks, rest % blocks);
            let (oy0, oy1) = (b * rows_per_block, ((b + 1) * rows_per_block).min(oh));
            let input = &x[(ni * ch + g * cg) * h * w..(ni * ch + (g + 1) * cg) * h * w];
            let m = &self.groups[g];
            let bias = self.bias.as_ref().map(|b| &b[g * og..(g + 1) * og]);
            let mut active = Active::default();
            let mut column = vec![0.0f32; og];
            let mut acc = Vec::new();
            let mut part = vec![0.0f32; og * (oy1 - oy0) * ow];
            for oy in oy0..oy1 {
                for ox in 0..ow {
                    self.receptive_field(input, [h, w], [cg, kh, kw], [oy, ox], &mut active);
                    m.matvec_serial(rt.isa(), &active, bias, self.act, &mut column, &mut acc);
                    let p = (oy - oy0) * ow + ox;
                    for (o, &v) in column.iter().enumerate() {
                        part[o * (oy1 - oy0) * ow + p] = v;
                    }
                }
            }
            part
        });
        for (item, part) in parts.into_iter().enumerate() {
            let (ni, rest) = (item / (groups * blocks), item % (groups * blocks));
            let (g, b) = (rest / blocks, rest % blocks);
            let (oy0, oy1) = (b * rows_per_block, ((b + 1) * rows_per_block).min(oh));
            let span = (oy1 - oy0) * ow;
            for o in 0..og {
                let at = ((ni * o_ch + g * og + o) * oh + oy0) * ow;
                y[at..at + span].copy_from_slice(&part[o * span..(o + 1) * span]);
            }
        }
        y
    }

    /// The non-zero inputs under output position `(oy, ox)`, indexed `(channel, ky, kx)`.
    fn receptive_field(
        &self,
        input: &[f32],
        [h, w]: [usize; 2],
        [cg, kh, kw]: [usize; 3],
        [oy, ox]: [usize; 2],
        active: &mut Active,
    ) {
        active.clear();
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let [pt, pl, _, _] = self.padding;
        for cl in 0..cg {
            let plane = &input[cl * h * w..(cl + 1) * h * w];
            for ky in 0..kh {
                let iy = (oy * sh + ky * dh).wrapping_sub(pt);
                if iy >= h {
                    continue;
                }
                for kx in 0..kw {
                    let ix = (ox * sw + kx * dw).wrapping_sub(pl);
                    if ix >= w {
                        continue;
                    }
                    let v = plane[iy * w + ix];
                    if v != 0.0 {
                        active.index.push(((cl * kh + ky) * kw + kx) as u32);
                        active.value.push(v);
                    }
                }
            }
        }
    }
}
