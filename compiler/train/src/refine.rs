//! Post-training refinement without labels: each shared layer's centroids are refit by least
//! squares so the layer's outputs on calibration inputs match the uncompressed layer's.
//!
//! For a layer with codes `code(j, t)`, output `j` on input vector `x` is
//! `Σ_k c_k · A_jk(x) + b_j` with `A_jk(x) = Σ_{t : code(j,t) = k} x_t` (for a convolution, `x`
//! is a column of the im2col matrix). Layers are refit in chain order: the inputs are the
//! activations of the network being refined (earlier layers already refit), the targets the
//! uncompressed network's outputs of the same layer on the same samples, so refitting also
//! absorbs the error of the layers before. The normal equations get a small ridge toward the
//! current centroids, `(AᵀA + λI) c = Aᵀ(y − b) + λ c₀`, which leaves unused codes where they
//! are; zero codes and biases are not changed.

use crate::TrainError;
use crate::net::{Kind, Net, Workspace};

/// What refinement did to one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRefinement {
    pub weight: String,
    /// Mean squared output error before and after refitting.
    pub mse_before: f64,
    pub mse_after: f64,
}

/// Codebooks larger than this are left as they are (the normal equations grow as its square).
pub const MAX_CODEBOOK: usize = 1024;

/// Refits the centroids of every shared dense/conv layer of `compressed` to match `original`
/// (the same network before quantization) on `inputs` (`n × input_len`).
pub fn refine_centroids(
    original: &Net,
    compressed: &mut Net,
    inputs: &[f32],
) -> Result<Vec<LayerRefinement>, TrainError> {
    if original.stages.len() != compressed.stages.len()
        || original.input_len() != compressed.input_len()
    {
        return Err(TrainError::Shape(
            "the original and compressed networks differ in structure".to_string(),
        ));
    }
    let n = inputs.len() / compressed.input_len().max(1);
    let mut ws_original = Workspace::new(original);
    original.forward(&mut ws_original, inputs, n);
    let mut ws = Workspace::new(compressed);
    let mut out = Vec::new();
    for i in 0..compressed.stages.len() {
        let (weight, bias, rows, row_len, vectors_per_sample, positions) =
            match &compressed.stages[i].kind {
                Kind::Dense {
                    weight,
                    bias,
                    inputs,
                    outputs,
                } => (*weight, *bias, *outputs, *inputs, 1, 1),
                Kind::Conv { weight, bias, geom } => {
                    (*weight, *bias, geom.cout, geom.k(), geom.p(), geom.p())
                }
                _ => continue,
            };
        let Some(shared) = compressed.params[weight].shared.clone() else {
            continue;
        };
        let k_count = shared.codebook.len();
        if k_count > MAX_CODEBOOK {
            continue;
        }
        compressed.forward(&mut ws, inputs, n);
        let is_conv = matches!(compressed.stages[i].kind, Kind::Conv { .. });
        let x_all: &[f32] = if is_conv { &ws.cols[i] } else { &ws.acts[i] };
        let target = &ws_original.acts[i + 1];
        let bias_values: Vec<f32> =
            bias.map_or(vec![0.0; rows], |b| compressed.params[b].values.clone());
        let mut gram = vec![0.0f64; k_count * k_count];
        let mut rhs = vec![0.0f64; k_count];
        let mut a = vec![0.0f64; k_count];
        let mut touched: Vec<usize> = Vec::with_capacity(k_count);
        let mut mse_before = 0.0f64;
        let out_len = rows * positions;
        let vectors = n * vectors_per_sample;
        for v in 0..vectors {
            let (s, q) = (v / vectors_per_sample, v % vectors_per_sample);
            // Input element t of this vector.
            let x = |t: usize| -> f64 {
                if is_conv {
                    f64::from(x_all[s * row_len * positions + t * positions + q])
                } else {
                    f64::from(x_all[s * row_len + t])
                }
            };
            for j in 0..rows {
                for t in 0..row_len {
                    let c = shared.code_of[j * row_len + t];
                    if !shared.is_trained(c) {
                        continue;
                    }
                    let c = c as usize;
                    if a[c] == 0.0 {
                        touched.push(c);
                    }
                    a[c] += x(t);
                }
                let y =
                    f64::from(target[s * out_len + j * positions + q]) - f64::from(bias_values[j]);
                let mut predicted = 0.0;
                for &c in &touched {
                    predicted += a[c] * f64::from(shared.codebook[c]);
                    rhs[c] += a[c] * y;
                    for &d in &touched {
                        gram[c * k_count + d] += a[c] * a[d];
                    }
                }
                mse_before += (predicted - y).powi(2);
                for &c in &touched {
                    a[c] = 0.0;
                }
                touched.clear();
            }
        }
        let trace: f64 = (0..k_count).map(|c| gram[c * k_count + c]).sum();
        let ridge = 1e-6 * trace / k_count as f64 + 1e-12;
        for c in 0..k_count {
            gram[c * k_count + c] += ridge;
            rhs[c] += ridge * f64::from(shared.codebook[c]);
        }
        let Some(solution) = solve_spd(&mut gram, &mut rhs, k_count) else {
            continue;
        };
        // The error after refitting, from the normal equations: ‖Ac − y‖² is evaluated again
        // on the next forward pass; here we recompute it directly.
        let param = &mut compressed.params[weight];
        let s = param.shared.as_mut().expect("checked above");
        for (k, c) in s.codebook.iter_mut().enumerate() {
            if s.zero_code && k == 0 {
                continue;
            }
            *c = solution[k] as f32;
        }
        param.decode_shared();
        compressed.forward(&mut ws, inputs, n);
        let after: f64 = ws.acts[i + 1]
            .iter()
            .zip(target.iter())
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        let count = (vectors * rows).max(1) as f64;
        out.push(LayerRefinement {
            weight: compressed.params[weight].name.clone(),
            mse_before: mse_before / count,
            mse_after: after / count,
        });
    }
    Ok(out)
}

/// Solves `g x = r` for a symmetric positive definite `g` (`k × k`, overwritten) by Cholesky;
/// `None` when `g` is not positive definite.
fn solve_spd(g: &mut [f64], r: &mut [f64], k: usize) -> Option<Vec<f64>> {
    for j in 0..k {
        let mut d = g[j * k + j];
        for p in 0..j {
            d -= g[j * k + p] * g[j * k + p];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        g[j * k + j] = d;
        for i in j + 1..k {
            let mut v = g[i * k + j];
            for p in 0..j {
                v -= g[i * k + p] * g[j * k + p];
            }
            g[i * k + j] = v / d;
        }
    }
    // L y = r, then Lᵀ x = y.
    for i in 0..k {
        let mut v = r[i];
        for p in 0..i {
            v -= g[i * k + p] * r[p];
        }
        r[i] = v / g[i * k + i];
    }
    for i in (0..k).rev() {
        let mut v = r[i];
        for p in i + 1..k {
            v -= g[p * k + i] * r[p];
        }
        r[i] = v / g[i * k + i];
    }
    Some(r.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        let mut g = vec![4.0, 2.0, 2.0, 3.0];
        let mut r = vec![2.0, 1.0];
        let x = solve_spd(&mut g, &mut r, 2).unwrap();
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
    }
}
