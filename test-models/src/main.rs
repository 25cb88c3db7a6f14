//! `make-tiny-models <OUT_DIR> [--hidden N --intermediate N --layers N --heads N --kv-heads N]`:
//! writes every tiny test model to `<OUT_DIR>/<arch>/` (default shape: the one tests use;
//! the options make larger random models of the same families for benchmarks).

use std::path::PathBuf;
use test_models::{write_model, Arch, TinyModel};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: make-tiny-models <OUT_DIR> [--hidden N --intermediate N --layers N --heads N --kv-heads N]");
        std::process::exit(2);
    };
    let mut overrides: Vec<(String, usize)> = Vec::new();
    while let Some(flag) = args.next() {
        match args.next().and_then(|v| v.parse().ok()) {
            Some(v) => overrides.push((flag, v)),
            None => {
                eprintln!("error: {flag} needs a number");
                std::process::exit(2);
            }
        }
    }
    for arch in Arch::ALL {
        let mut spec = TinyModel::new(arch);
        for (flag, v) in &overrides {
            match flag.as_str() {
                "--hidden" => spec.hidden = *v,
                "--intermediate" => spec.intermediate = *v,
                "--layers" => spec.layers = *v,
                "--heads" => spec.heads = *v,
                "--kv-heads" => spec.kv_heads = *v,
                other => {
                    eprintln!("error: unknown option {other}");
                    std::process::exit(2);
                }
            }
        }
        let dir = out.join(arch.name());
        if let Err(e) = write_model(&dir, &spec) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        println!("{}", dir.display());
    }
}
