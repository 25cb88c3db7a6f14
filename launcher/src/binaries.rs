//! Locates the shard and router executables: next to the launcher's own executable first (a
//! cargo target dir or an install prefix), then on PATH.

use crate::error::LauncherError;
use std::path::{Path, PathBuf};

/// Executable name of the model shard.
pub const SHARD: &str = "text-generation-shard";
/// Executable name of the HTTP router.
pub const ROUTER: &str = "text-generation-router";

/// Finds `name` in `exe_dir`, then in the `PATH` directories.
pub fn find_in(
    name: &'static str,
    exe_dir: &Path,
    path: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, LauncherError> {
    let beside = exe_dir.join(name);
    if is_executable(&beside) {
        return Ok(beside);
    }
    if let Some(path) = path {
        for dir in std::env::split_paths(path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(LauncherError::BinaryNotFound {
        name,
        dir: exe_dir.to_path_buf(),
    })
}

/// Finds `name` for this process.
pub fn find(name: &'static str) -> Result<PathBuf, LauncherError> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    find_in(name, &exe_dir, std::env::var_os("PATH").as_deref())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn touch_exe(path: &Path) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn beside_wins_over_path() {
        let beside = tempfile::tempdir().unwrap();
        let on_path = tempfile::tempdir().unwrap();
        touch_exe(&on_path.path().join(SHARD));
        let path = std::env::join_paths([on_path.path()]).unwrap();
        assert_eq!(
            find_in(SHARD, beside.path(), Some(&path)).unwrap(),
            on_path.path().join(SHARD)
        );
        touch_exe(&beside.path().join(SHARD));
        assert_eq!(
            find_in(SHARD, beside.path(), Some(&path)).unwrap(),
            beside.path().join(SHARD)
        );
        let err = find_in(ROUTER, beside.path(), Some(&path)).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot find `text-generation-router`"));
    }
}
