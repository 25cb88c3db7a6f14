//! Compiles `v3/generate.proto` with protox (pure Rust), so no `protoc` install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=v3/generate.proto");
    let fds = protox::compile(["v3/generate.proto"], ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
