//! Accuracy of a model on a labelled data set, through the reference interpreter.
//!
//! Data sets are named `mnist:DIR` (the IDX files of MNIST's test split, pixels scaled to
//! [0, 1]) or `npz:FILE` (arrays `x`/`X` and `y`; uint8 pixels scaled to [0, 1]). Each sample is
//! reshaped to the model's input shape when the element counts agree; top-1 accuracy compares
//! the argmax of the model's first output with the label. Training reads MNIST's training split
//! (`read_split`), and the batched paths take the samples as one flat array (`model_inputs`).

use crate::InputError;
use sprig_front::files::{Dataset, MnistSplit, read_mnist, read_npz_dataset};
use sprig_ir::{Graph, GraphInfo, Tensor};
use std::path::Path;

/// Reads `mnist:DIR` or `npz:FILE`, keeping at most `limit` samples.
pub fn read_dataset(spec: &str, limit: usize) -> anyhow::Result<Dataset> {
    let bad = |e: sprig_front::files::FileError| InputError(format!("error: {e}"));
    let mut data = if let Some(dir) = spec.strip_prefix("mnist:") {
        read_mnist(Path::new(dir), MnistSplit::Test, Some(limit)).map_err(bad)?
    } else if let Some(file) = spec.strip_prefix("npz:") {
        read_npz_dataset(Path::new(file)).map_err(bad)?
    } else {
        return Err(InputError(format!(
            "error: data set `{spec}`: expected mnist:DIR or npz:FILE"
        ))
        .into());
    };
    keep_first(&mut data, limit);
    Ok(data)
}

/// Keeps at most the first `limit` samples of `data`.
pub fn keep_first(data: &mut Dataset, limit: usize) {
    if data.labels.len() > limit {
        let per = data.images.len() / data.labels.len().max(1);
        data.images.data.truncate(limit * per);
        let mut dims = data.images.dims().to_vec();
        dims[0] = limit;
        data.images.shape = sprig_ir::Shape::new(dims);
        data.labels.truncate(limit);
    }
}

/// Top-1 accuracy of the model over the data set.
pub fn accuracy(graph: &Graph, info: &GraphInfo, data: &Dataset) -> anyhow::Result<f64> {
    let [input] = graph.inputs() else {
        return Err(InputError("error: accuracy needs a model with one input".to_string()).into());
    };
    let shape = info.ty(*input).shape.clone();
    let n = data.labels.len();
    let per = data.images.len() / n.max(1);
    if per != shape.len() {
        return Err(InputError(format!(
            "error: the data set's samples hold {per} values but the model's input is {}",
            info.ty(*input)
        ))
        .into());
    }
    let mut correct = 0usize;
    for (i, &label) in data.labels.iter().enumerate() {
        let sample = Tensor::new(
            shape.clone(),
            data.images.data[i * per..(i + 1) * per].to_vec(),
        );
        let out = sprig_ir::interpret(graph, info, &[sample])
            .map_err(|e| InputError(format!("error: {e}")))?;
        let scores = &out[0].data;
        let predicted =
            (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
        correct += usize::from(predicted == Some(label as usize));
    }
    Ok(if n == 0 {
        0.0
    } else {
        correct as f64 / n as f64
    })
}

/// Which split of a data set to read: MNIST has both (`mnist:DIR`); an `.npz` file is one set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Reads `mnist:DIR` (the given split) or `npz:FILE`, keeping at most `limit` samples.
pub fn read_split(spec: &str, split: Split, limit: Option<usize>) -> anyhow::Result<Dataset> {
    match (spec.strip_prefix("mnist:"), split) {
        (Some(dir), Split::Train) => read_mnist(Path::new(dir), MnistSplit::Train, limit)
            .map_err(|e| anyhow::Error::from(InputError(format!("error: {e}")))),
        _ => read_dataset(spec, limit.unwrap_or(usize::MAX)),
    }
}

/// The samples of `data` as one flat array in the model's input layout, checked against the
/// model's input size.
pub fn model_inputs<'a>(
    data: &'a Dataset,
    input_len: usize,
    spec: &str,
) -> anyhow::Result<sprig_train::Samples<'a>> {
    let n = data.labels.len();
    let per = data.images.len() / n.max(1);
    if per != input_len {
        return Err(InputError(format!(
            "error: data set `{spec}`: its samples hold {per} values but the model's input holds {input_len}"
        ))
        .into());
    }
    Ok(sprig_train::Samples {
        inputs: &data.images.data,
        labels: &data.labels,
    })
}

/// Top-1 and top-5 hits of one sample's scores (ties broken toward the lower class).
pub fn hits(scores: &[f32], label: usize) -> (bool, bool) {
    let Some(&target) = scores.get(label) else {
        return (false, false);
    };
    let higher = scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| s > target || (s == target && i < label) || s.is_nan())
        .count();
    (higher == 0, higher < 5)
}
