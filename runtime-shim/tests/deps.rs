//! Dependencies beside the handler, installed from local package folders (no
//! network): npm for a package.json, pip for a requirements.txt, and the
//! content-hash cache that lets the next cold start skip the install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Shim, write};

#[test]
fn node_dependency_from_a_local_folder_and_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let pkg = root.path().join("localpkg");
    write(
        &pkg,
        "package.json",
        r#"{"name":"kipper-local-dep","version":"1.0.0","main":"index.js"}"#,
    );
    write(
        &pkg,
        "index.js",
        "module.exports = { greet: (n) => 'hi ' + n };",
    );
    let fun = root.path().join("fn");
    write(
        &fun,
        "package.json",
        r#"{"name":"fn","version":"1.0.0","dependencies":{"kipper-local-dep":"file:../localpkg"}}"#,
    );
    let handler = write(
        &fun,
        "index.js",
        "const dep = require('kipper-local-dep');\nmodule.exports = () => dep.greet('dep');",
    );
    let cache = root.path().join("cache");
    let cache_env = cache.to_str().unwrap();
    // npm_config_offline: prove nothing is fetched from a registry.
    let env = [
        ("KIPPER_DEPS_CACHE", cache_env),
        ("npm_config_offline", "true"),
    ];

    let shim = Shim::start(&handler, &env);
    assert_eq!(shim.get("/").text(), "hi dep", "{}", shim.logs());
    assert!(
        shim.logs().contains("dependencies installed"),
        "{}",
        shim.logs()
    );
    drop(shim);
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].starts_with("node-"), "{entries:?}");
    assert!(cache.join(&entries[0]).join(".kipper-complete").exists());

    // Warm cache: the next cold start does not install (the source folder is even gone).
    std::fs::remove_dir_all(&pkg).unwrap();
    let shim = Shim::start(&handler, &env);
    assert_eq!(shim.get("/").text(), "hi dep", "{}", shim.logs());
    assert!(
        shim.logs().contains("found in the cache"),
        "{}",
        shim.logs()
    );
    assert!(
        !shim.logs().contains("dependencies installed"),
        "{}",
        shim.logs()
    );
}

#[test]
fn python_dependency_from_a_local_folder() {
    let root = tempfile::tempdir().unwrap();
    let pkg = root.path().join("pylocal");
    write(
        &pkg,
        "pyproject.toml",
        "[build-system]\nrequires = [\"setuptools>=61\", \"wheel\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"kipper-local-dep\"\nversion = \"1.0.0\"\n\n[tool.setuptools]\npy-modules = [\"kipper_local_dep\"]\n",
    );
    write(
        &pkg,
        "kipper_local_dep.py",
        "def greet(n):\n    return 'hi ' + n\n",
    );
    let fun = root.path().join("fn");
    // Relative to the handler's folder, as a user writes it.
    write(&fun, "requirements.txt", "../pylocal\n");
    let handler = write(
        &fun,
        "handler.py",
        "import kipper_local_dep\ndef handler():\n    return kipper_local_dep.greet('py')",
    );
    // No index (no network) and the installed setuptools instead of an isolated build env.
    let env = [("PIP_NO_INDEX", "1"), ("PIP_NO_BUILD_ISOLATION", "0")];
    let shim = Shim::start(&handler, &env);
    assert_eq!(shim.get("/").text(), "hi py", "{}", shim.logs());
    assert!(
        shim.logs().contains("dependencies installed"),
        "{}",
        shim.logs()
    );
}

#[test]
fn a_failed_install_answers_503_and_logs_the_reason() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "requirements.txt", "./no-such-folder\n");
    let handler = write(root.path(), "handler.py", "def handler():\n    return 1");
    let shim = Shim::spawn(&handler, &[("PIP_NO_INDEX", "1")]);
    let r = harness::request_when_bound(
        shim.port,
        "GET",
        "/",
        &[],
        b"",
        std::time::Duration::from_secs(30),
    );
    harness::assert_private_load_failure(&shim, &r, "pip install");
    assert_eq!(shim.get("/ready").status, 503);
}

#[test]
fn esm_handlers_import_installed_dependencies() {
    let root = tempfile::tempdir().unwrap();
    let pkg = root.path().join("localpkg");
    write(
        &pkg,
        "package.json",
        r#"{"name":"kipper-local-esm","version":"1.0.0","main":"index.js"}"#,
    );
    write(
        &pkg,
        "index.js",
        "module.exports = { shout: (s) => s.toUpperCase() };",
    );
    let fun = root.path().join("fn");
    // "type": "module": index.js is ESM, and `import` ignores NODE_PATH.
    write(
        &fun,
        "package.json",
        r#"{"name":"fn","version":"1.0.0","type":"module","dependencies":{"kipper-local-esm":"file:../localpkg"}}"#,
    );
    let handler = write(
        &fun,
        "index.js",
        "import dep from 'kipper-local-esm';\nexport default async () => dep.shout('esm');",
    );
    let shim = Shim::start(&handler, &[("npm_config_offline", "true")]);
    assert_eq!(shim.get("/").text(), "ESM", "{}", shim.logs());
}

/// `KIPPER_MODE=install` is the pod's init step: it fills the cache and exits, and the
/// serving shim that starts next finds the install there and runs no installer.
#[test]
fn install_mode_fills_the_cache_that_the_serving_shim_uses() {
    let root = tempfile::tempdir().unwrap();
    let pkg = root.path().join("localpkg");
    write(
        &pkg,
        "package.json",
        r#"{"name":"kipper-init-dep","version":"1.0.0","main":"index.js"}"#,
    );
    write(&pkg, "index.js", "module.exports = () => 'from init';");
    let fun = root.path().join("fn");
    write(
        &fun,
        "package.json",
        r#"{"name":"fn","version":"1.0.0","dependencies":{"kipper-init-dep":"file:../localpkg"}}"#,
    );
    let handler = write(
        &fun,
        "index.js",
        "const dep = require('kipper-init-dep');\nmodule.exports = () => dep();",
    );
    let cache = root.path().join("cache");
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kipper-shim"));
        cmd.arg(&handler)
            .env("KIPPER_MODE", "install")
            .env("KIPPER_DEPS_CACHE", &cache)
            .env("KIPPER_WORK_DIR", root.path().join("work"))
            .env("KIPPER_LOG_FORMAT", "text")
            .env("npm_config_offline", "true");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(log.contains("dependencies installed"), "{log}");

    let env = [
        ("KIPPER_DEPS_CACHE", cache.to_str().unwrap()),
        ("npm_config_offline", "true"),
    ];
    let shim = Shim::start(&handler, &env);
    assert_eq!(shim.get("/").text(), "from init", "{}", shim.logs());
    assert!(
        shim.logs().contains("found in the cache"),
        "{}",
        shim.logs()
    );
    assert!(
        !shim.logs().contains("installing dependencies"),
        "{}",
        shim.logs()
    );
    drop(shim);

    // A failed install is exit code 1 with the installer's reason in the log.
    write(
        &fun,
        "package.json",
        r#"{"name":"fn","version":"1.0.0","dependencies":{"kipper-init-dep":"file:../no-such"}}"#,
    );
    let out = run(&[]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("npm install"), "{log}");
}
