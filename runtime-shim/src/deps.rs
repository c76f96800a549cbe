//! Dependency installation: a `package.json` or `requirements.txt` beside the
//! handler is installed into a writable directory before the workers start.
//!
//! When a cache directory is mounted (`KIPPER_DEPS_CACHE`), each install lands
//! in `<cache>/<runtime>-<sha256 of the manifests>`: it is staged under a
//! temporary name and renamed into place only once complete, so a pod killed
//! mid-install never leaves a half-installed tree that the next one trusts,
//! and a warm cache makes the next cold start skip the install entirely.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::config::{Config, Runtime};
use crate::{DepsFailure, Error, Result};

/// Marks a finished install inside its directory.
const COMPLETE: &str = ".kipper-complete";

/// Where installed dependencies live, to be put on the worker's module path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Nothing to install.
    None,
    /// `NODE_PATH` entry (a `node_modules` directory).
    NodeModules(PathBuf),
    /// `PYTHONPATH` entry (a `pip --target` directory).
    PythonTarget(PathBuf),
}

/// Installs the handler's dependencies, if it declares any.
pub async fn install(config: &Config) -> Result<Installed> {
    let dir = config
        .handler
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    match config.runtime {
        Runtime::Node => install_node(config, &dir).await,
        Runtime::Python => install_python(config, &dir).await,
    }
}

fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            what: "cannot read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The content hash naming a cached install.
pub fn content_hash(runtime: Runtime, parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(runtime.name().as_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Rewrites relative `file:` dependency specs to absolute paths, because npm
/// runs in the install directory, not beside the handler; `None` when the
/// manifest declares no (optional) dependencies at all.
pub fn absolutize_file_specs(manifest: &[u8], base: &Path) -> Result<Option<Vec<u8>>> {
    let mut doc: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| Error::Deps(DepsFailure::Manifest(e)))?;
    let declared = ["dependencies", "optionalDependencies"]
        .iter()
        .any(|section| {
            doc.get(section)
                .and_then(serde_json::Value::as_object)
                .is_some_and(|deps| !deps.is_empty())
        });
    if !declared {
        return Ok(None);
    }
    for section in ["dependencies", "optionalDependencies"] {
        if let Some(deps) = doc
            .get_mut(section)
            .and_then(serde_json::Value::as_object_mut)
        {
            for spec in deps.values_mut() {
                if let Some(rel) = spec.as_str().and_then(|s| s.strip_prefix("file:")) {
                    let path = Path::new(rel);
                    if path.is_relative() {
                        *spec = serde_json::Value::String(format!(
                            "file:{}",
                            base.join(path).display()
                        ));
                    }
                }
            }
        }
    }
    serde_json::to_vec_pretty(&doc)
        .map(Some)
        .map_err(|e| Error::Deps(DepsFailure::Rewrite(e)))
}

/// The directory an install of `hash` goes to: the cache when mounted, else the work dir.
fn target(config: &Config, runtime: Runtime, hash: &str) -> PathBuf {
    match &config.deps_cache {
        Some(cache) => cache.join(format!("{}-{hash}", runtime.name())),
        None => config
            .work_dir
            .join("deps")
            .join(format!("{}-{hash}", runtime.name())),
    }
}

async fn install_node(config: &Config, dir: &Path) -> Result<Installed> {
    let Some(manifest) = read(&dir.join("package.json"))? else {
        return Ok(Installed::None);
    };
    if dir.join("node_modules").is_dir() {
        tracing::info!(message = "node_modules already beside the handler; not installing", dir = %dir.display());
        return Ok(Installed::None);
    }
    let base = std::path::absolute(dir).map_err(io("cannot resolve", dir))?;
    let Some(manifest) = absolutize_file_specs(&manifest, &base)? else {
        // A package.json with nothing to install (e.g. only "type": "module").
        return Ok(Installed::None);
    };
    let lock = read(&dir.join("package-lock.json"))?;
    let hash = content_hash(
        Runtime::Node,
        &[&manifest, lock.as_deref().unwrap_or_default()],
    );
    let final_dir = target(config, Runtime::Node, &hash);
    let installed = final_dir.join("node_modules");
    if final_dir.join(COMPLETE).exists() {
        tracing::info!(message = "dependencies found in the cache; not installing", dir = %final_dir.display());
        return Ok(Installed::NodeModules(installed));
    }
    let staging = staging_dir(&final_dir)?;
    std::fs::write(staging.join("package.json"), &manifest)
        .map_err(io("cannot write", &staging))?;
    if let Some(lock) = &lock {
        std::fs::write(staging.join("package-lock.json"), lock)
            .map_err(io("cannot write", &staging))?;
    }
    let mut cmd = Command::new(&config.npm_bin);
    // --install-links copies local `file:` folders instead of linking them, so
    // a cached install stands on its own.
    cmd.args([
        "install",
        "--omit=dev",
        "--install-links",
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--loglevel=error",
    ])
    .current_dir(&staging);
    run_installer(cmd, "npm install", &config.npm_bin).await?;
    publish(&staging, &final_dir)?;
    Ok(Installed::NodeModules(installed))
}

async fn install_python(config: &Config, dir: &Path) -> Result<Installed> {
    let requirements = dir.join("requirements.txt");
    let Some(manifest) = read(&requirements)? else {
        return Ok(Installed::None);
    };
    if manifest.iter().all(u8::is_ascii_whitespace) {
        return Ok(Installed::None);
    }
    let hash = content_hash(Runtime::Python, &[&manifest]);
    let final_dir = target(config, Runtime::Python, &hash);
    if final_dir.join(COMPLETE).exists() {
        tracing::info!(message = "dependencies found in the cache; not installing", dir = %final_dir.display());
        return Ok(Installed::PythonTarget(final_dir));
    }
    let staging = staging_dir(&final_dir)?;
    let requirements =
        std::path::absolute(&requirements).map_err(io("cannot resolve", &requirements))?;
    let mut cmd = Command::new(&config.python_bin);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--quiet",
        "--target",
    ])
    .arg(&staging)
    .arg("-r")
    .arg(&requirements)
    // Relative paths in requirements.txt are relative to the handler.
    .current_dir(dir);
    run_installer(cmd, "pip install", &config.python_bin).await?;
    publish(&staging, &final_dir)?;
    Ok(Installed::PythonTarget(final_dir))
}

fn staging_dir(final_dir: &Path) -> Result<PathBuf> {
    let name = final_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Pods sharing the cache volume all run as pid 1: the clock tells them apart.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let staging = final_dir.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .map_err(io("cannot create the dependency directory", &staging))?;
    Ok(staging)
}

/// Moves a finished install into place; a concurrent pod that won the race is fine.
fn publish(staging: &Path, final_dir: &Path) -> Result<()> {
    std::fs::write(staging.join(COMPLETE), b"").map_err(io("cannot write", staging))?;
    match std::fs::rename(staging, final_dir) {
        Ok(()) => Ok(()),
        Err(_) if final_dir.join(COMPLETE).exists() => {
            let _ = std::fs::remove_dir_all(staging);
            Ok(())
        }
        Err(source) => Err(Error::Io {
            what: "cannot move the installed dependencies to",
            path: final_dir.to_path_buf(),
            source,
        }),
    }
}

async fn run_installer(mut cmd: Command, what: &'static str, program: &str) -> Result<()> {
    let started = Instant::now();
    tracing::info!(message = "installing dependencies", installer = what);
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = cmd.output().await.map_err(|source| {
        Error::Deps(DepsFailure::Launch {
            program: program.to_owned(),
            source,
        })
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(Error::Deps(DepsFailure::Exited {
            installer: what,
            status: output.status,
            stderr_tail: tail.join(" | "),
        }));
    }
    tracing::info!(
        message = "dependencies installed",
        installer = what,
        ms = started.elapsed().as_millis() as u64
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_content_and_runtime() {
        let a = content_hash(Runtime::Node, &[b"{}", b""]);
        assert_eq!(a.len(), 32);
        assert_eq!(a, content_hash(Runtime::Node, &[b"{}", b""]));
        assert_ne!(a, content_hash(Runtime::Python, &[b"{}", b""]));
        assert_ne!(a, content_hash(Runtime::Node, &[b"{}", b"x"]));
        assert_ne!(
            content_hash(Runtime::Node, &[b"ab", b""]),
            content_hash(Runtime::Node, &[b"a", b"b"])
        );
    }

    #[test]
    fn relative_file_specs_become_absolute() {
        let manifest =
            br#"{"dependencies":{"local":"file:../pkg","abs":"file:/x/y","npm":"1.2.3"}}"#;
        let out = absolutize_file_specs(manifest, Path::new("/fn/dir"))
            .unwrap()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["dependencies"]["local"], "file:/fn/dir/../pkg");
        assert_eq!(doc["dependencies"]["abs"], "file:/x/y");
        assert_eq!(doc["dependencies"]["npm"], "1.2.3");
        assert!(
            absolutize_file_specs(b"{not json", Path::new("/"))
                .unwrap_err()
                .to_string()
                .contains("package.json")
        );
        let nothing =
            absolutize_file_specs(br#"{"type":"module","dependencies":{}}"#, Path::new("/"));
        assert_eq!(nothing.unwrap(), None, "nothing to install");
    }

    #[test]
    fn publish_keeps_the_first_complete_install() {
        let dir = tempfile::tempdir().unwrap();
        let final_dir = dir.path().join("node-abc");
        let first = staging_dir(&final_dir).unwrap();
        publish(&first, &final_dir).unwrap();
        assert!(final_dir.join(COMPLETE).exists());
        // A second install of the same hash (another pod) must not fail.
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        let second = dir.path().join("other");
        std::fs::write(second.join("x"), b"1").unwrap();
        std::fs::create_dir_all(final_dir.join("node_modules")).unwrap();
        publish(&second, &final_dir).unwrap();
        assert!(!second.exists());
    }
}
