//! `make-tiny-models <OUT_DIR>`: writes every tiny test model to `<OUT_DIR>/<arch>/`.

use std::path::PathBuf;
use test_models::{write_model, Arch, TinyModel};

fn main() {
    let Some(out) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: make-tiny-models <OUT_DIR>");
        std::process::exit(2);
    };
    for arch in Arch::ALL {
        let dir = out.join(arch.name());
        if let Err(e) = write_model(&dir, &TinyModel::new(arch)) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        println!("{}", dir.display());
    }
}
