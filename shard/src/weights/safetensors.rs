//! HF safetensors directories: every `*.safetensors` file memory-mapped; each rank copies only
//! its slice of a tensor out of the map.

use super::WeightSource;
use crate::error::{Result, ShardError};
use crate::parallel::Split;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// All safetensors files of a model directory.
pub struct SafetensorsWeights {
    dir: PathBuf,
    files: MmapedSafetensors,
}

impl SafetensorsWeights {
    /// Maps every `*.safetensors` file in `dir` (an index file is not needed: names are routed
    /// by reading each file's header, as TGI does).
    pub fn open(dir: &Path) -> Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| ShardError::Io {
                context: format!("listing {}", dir.display()),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(ShardError::MissingFile {
                what: "*.safetensors weights",
                path: dir.to_path_buf(),
            });
        }
        // SAFETY: the files are mapped read-only; tgi-rs never writes to model files while
        // serving. A concurrent external writer would be a deployment error, as with any mmap.
        let files =
            unsafe { MmapedSafetensors::multi(&paths) }.map_err(|e| ShardError::BadFile {
                path: dir.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
        })
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>> {
        self.files.get(name).map_err(|_| ShardError::MissingTensor {
            name: name.to_string(),
            source_desc: self.describe(),
        })
    }
}

fn dtype_of(d: safetensors::Dtype, name: &str) -> Result<DType> {
    Ok(match d {
        safetensors::Dtype::F32 => DType::F32,
        safetensors::Dtype::F16 => DType::F16,
        safetensors::Dtype::BF16 => DType::BF16,
        safetensors::Dtype::F64 => DType::F64,
        safetensors::Dtype::U8 => DType::U8,
        safetensors::Dtype::U32 => DType::U32,
        safetensors::Dtype::I64 => DType::I64,
        other => {
            return Err(ShardError::InvalidConfig(format!(
                "tensor `{name}` has unsupported dtype {other:?}"
            )))
        }
    })
}

/// Copies part `rank` of `world` along `dim` out of a row-major buffer.
fn slice_bytes(
    data: &[u8],
    shape: &[usize],
    elem: usize,
    dim: usize,
    rank: usize,
    world: usize,
    name: &str,
) -> Result<(Vec<u8>, Vec<usize>)> {
    let size = *shape.get(dim).ok_or_else(|| {
        ShardError::Sharding(format!(
            "tensor `{name}` of shape {shape:?} has no dimension {dim}"
        ))
    })?;
    if size % world != 0 {
        return Err(ShardError::Sharding(format!(
            "tensor `{name}` dimension {dim} of size {size} is not divisible by {world} shards"
        )));
    }
    let part = size / world;
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product::<usize>() * elem;
    let mut out = Vec::with_capacity(outer * part * inner);
    for o in 0..outer {
        let start = (o * size + rank * part) * inner;
        out.extend_from_slice(&data[start..start + part * inner]);
    }
    let mut new_shape = shape.to_vec();
    new_shape[dim] = part;
    Ok((out, new_shape))
}

impl WeightSource for SafetensorsWeights {
    fn describe(&self) -> String {
        format!("safetensors in {}", self.dir.display())
    }

    fn contains(&self, name: &str) -> bool {
        self.files.get(name).is_ok()
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    fn tensor(&self, name: &str, split: Split, dtype: DType, device: &Device) -> Result<Tensor> {
        let view = self.view(name)?;
        let stored = dtype_of(view.dtype(), name)?;
        let t = match split {
            Split::Full => Tensor::from_raw_buffer(view.data(), stored, view.shape(), device)?,
            Split::Dim { dim, rank, world } => {
                let (bytes, shape) = slice_bytes(
                    view.data(),
                    view.shape(),
                    stored.size_in_bytes(),
                    dim,
                    rank,
                    world,
                    name,
                )?;
                Tensor::from_raw_buffer(&bytes, stored, &shape, device)?
            }
        };
        Ok(if t.dtype() == dtype {
            t
        } else {
            t.to_dtype(dtype)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_rows_and_columns() {
        // 2x4 f32-sized elements numbered 0..8, elem size 1 for readability.
        let data: Vec<u8> = (0..8).collect();
        let (rows, s) = slice_bytes(&data, &[2, 4], 1, 0, 1, 2, "t").expect("rows");
        assert_eq!((rows, s), (vec![4, 5, 6, 7], vec![1, 4]));
        let (cols, s) = slice_bytes(&data, &[2, 4], 1, 1, 1, 2, "t").expect("cols");
        assert_eq!((cols, s), (vec![2, 3, 6, 7], vec![2, 2]));
        assert!(slice_bytes(&data, &[2, 4], 1, 1, 0, 3, "t").is_err());
    }
}
