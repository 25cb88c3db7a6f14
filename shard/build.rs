//! Compiles `kernels/*.cu` to PTX when the `cuda` feature is on; the CPU build never needs nvcc.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    cuda::build();
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::path::PathBuf;

    pub fn build() {
        println!("cargo::rerun-if-changed=kernels");
        let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("ptx.rs");
        let result = cudaforge::KernelBuilder::new()
            .source_dir("kernels")
            .arg("--expt-relaxed-constexpr")
            .arg("-std=c++17")
            .arg("-O3")
            .build_ptx()
            .and_then(|ptx| ptx.write(&out));
        if let Err(e) = result {
            // A build script reports failure by panicking; say what to fix.
            panic!("compiling the CUDA kernels in shard/kernels failed (is nvcc on PATH and CUDA_COMPUTE_CAP set?): {e}");
        }
    }
}
