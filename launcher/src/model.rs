//! Turns `--model-id` into a path on disk: a local directory or `.gguf` file, a hub id already
//! in the local Hugging Face cache, or (when unset) the embedded default model. Nothing is
//! downloaded: our machines cannot reach the hub, and the shard loads local files only.

use crate::error::LauncherError;
use std::path::{Path, PathBuf};

/// File name of the embedded default model.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where the default model is looked for, in order.
pub fn default_model_candidates(
    env_override: Option<PathBuf>,
    cwd: Option<PathBuf>,
    exe: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = env_override {
        out.push(p);
        return out;
    }
    if let Some(cwd) = cwd {
        out.push(cwd.join("models").join(DEFAULT_MODEL_FILE));
    }
    // The repository root: two levels above `target/<profile>/text-generation-launcher`, and
    // the checkout this binary was built from.
    if let Some(root) = exe.as_deref().and_then(|e| e.ancestors().nth(3)) {
        out.push(root.join("models").join(DEFAULT_MODEL_FILE));
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    out.push(built_from.join("models").join(DEFAULT_MODEL_FILE));
    out
}

/// The resolved model location for `--model-id` (None = the embedded default).
pub fn resolve(
    model_id: Option<&str>,
    revision: Option<&str>,
    hub_cache: Option<&str>,
) -> Result<PathBuf, LauncherError> {
    let Some(model_id) = model_id else {
        let candidates = default_model_candidates(
            std::env::var_os("TGI_DEFAULT_MODEL").map(PathBuf::from),
            std::env::current_dir().ok(),
            std::env::current_exe().ok(),
        );
        return candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| LauncherError::ModelNotFound {
                model_id: DEFAULT_MODEL_FILE.into(),
                hint: format!(
                    "no --model-id given and the default model is missing (looked at {}); run `scripts/fetch-default-model.sh` or pass --model-id",
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
    };
    let local = PathBuf::from(model_id);
    if local.exists() {
        return Ok(local);
    }
    let cache = hub_cache_dir(hub_cache);
    if let Some(found) = cache
        .as_deref()
        .and_then(|c| find_in_hub_cache(c, model_id, revision))
    {
        return Ok(found);
    }
    Err(LauncherError::ModelNotFound {
        model_id: model_id.into(),
        hint: format!(
            "it is neither a local path nor in the Hugging Face cache ({}); tgi-rs does not download weights: pass a local model directory or .gguf file, or download it first (`huggingface-cli download {model_id}`)",
            cache.map_or("no cache directory".into(), |c| c.display().to_string())
        ),
    })
}

fn hub_cache_dir(flag: Option<&str>) -> Option<PathBuf> {
    if let Some(dir) = flag {
        return Some(PathBuf::from(dir));
    }
    let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
    var("HUGGINGFACE_HUB_CACHE")
        .or_else(|| var("HF_HUB_CACHE"))
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
}

/// `models--org--name/snapshots/<rev>` of the HF cache layout; `revision` may be a branch
/// (resolved through `refs/`) or a commit hash.
pub fn find_in_hub_cache(cache: &Path, model_id: &str, revision: Option<&str>) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", model_id.replace('/', "--")));
    let revision = revision.unwrap_or("main");
    let commit = std::fs::read_to_string(repo.join("refs").join(revision))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let snapshot = repo.join("snapshots").join(commit);
    if snapshot.is_dir() {
        return Some(snapshot);
    }
    // No ref for the revision: take the only snapshot there is, if unambiguous.
    let mut snapshots = std::fs::read_dir(repo.join("snapshots"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir());
    match (snapshots.next(), snapshots.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_candidates_order() {
        let c = default_model_candidates(
            None,
            Some("/work".into()),
            Some("/repo/target/release/text-generation-launcher".into()),
        );
        assert_eq!(c[0], PathBuf::from("/work/models").join(DEFAULT_MODEL_FILE));
        assert_eq!(c[1], PathBuf::from("/repo/models").join(DEFAULT_MODEL_FILE));
        let o = default_model_candidates(Some("/x.gguf".into()), Some("/work".into()), None);
        assert_eq!(o, vec![PathBuf::from("/x.gguf")]);
    }

    #[test]
    fn hub_cache_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--org--m");
        std::fs::create_dir_all(repo.join("snapshots/abc")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "abc\n").unwrap();
        assert_eq!(
            find_in_hub_cache(dir.path(), "org/m", None),
            Some(repo.join("snapshots/abc"))
        );
        assert_eq!(
            find_in_hub_cache(dir.path(), "org/m", Some("abc")),
            Some(repo.join("snapshots/abc"))
        );
        assert_eq!(find_in_hub_cache(dir.path(), "org/other", None), None);
        let err = resolve(Some("org/none"), None, Some(dir.path().to_str().unwrap())).unwrap_err();
        assert!(err.to_string().contains("tgi-rs does not download weights"));
    }
}
