//! The Dockerfiles under `images/`, checked without a container engine: pinned
//! multi-stage builds, non-root users, and the entrypoints and users that
//! `images/README.md` documents; every path they copy and every package and
//! binary they build exists in the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// One Dockerfile instruction per entry, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            current.push_str(stripped);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        if let Some((op, rest)) = current.trim().split_once(char::is_whitespace) {
            out.push((op.to_ascii_uppercase(), rest.trim().to_string()));
        }
        current.clear();
    }
    out
}

/// Rows of the table in images/README.md: (image, dockerfile, base, entrypoint, user).
fn documented() -> Vec<[String; 5]> {
    let text = std::fs::read_to_string(repo().join("images/README.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            [
                cells[0].clone(),
                cells[1].clone(),
                cells[2].clone(),
                cells[3].clone(),
                cells[4].clone(),
            ]
        })
        .collect()
}

fn package_exists(package: &str) -> bool {
    ["poll-sidecar", "runtime-shim", "controller", "bench"]
        .iter()
        .any(|dir| {
            let manifest =
                std::fs::read_to_string(repo().join(dir).join("Cargo.toml")).unwrap_or_default();
            manifest.contains(&format!("name = \"{package}\""))
        })
}

#[test]
fn the_four_images_are_documented() {
    let rows = documented();
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "kipper-runtime-node",
            "kipper-runtime-python",
            "kipper-poll",
            "kipper-controller"
        ]
    );
}

#[test]
fn dockerfiles_match_the_docs_and_the_workspace() {
    for [image, file, base, entrypoint, user] in documented() {
        let path = repo().join("images").join(&file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let ins = instructions(&text);
        let froms: Vec<&String> = ins
            .iter()
            .filter(|(op, _)| op == "FROM")
            .map(|(_, a)| a)
            .collect();
        assert!(froms.len() >= 2, "{image}: multi-stage");
        for from in &froms {
            let reference = from.split_whitespace().next().unwrap();
            let tag = reference.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest",
                "{image}: unpinned base {reference}"
            );
            assert!(
                tag.chars().any(|c| c.is_ascii_digit())
                    || reference.contains("distroless/cc-debian12"),
                "{image}: {reference}"
            );
        }
        let last_from = froms.last().unwrap().split_whitespace().next().unwrap();
        assert_eq!(last_from, base, "{image}: runtime base");
        // Non-root: the final stage's last USER is numeric and not 0.
        let last_stage = ins.iter().rposition(|(op, _)| op == "FROM").unwrap();
        let users: Vec<&String> = ins[last_stage..]
            .iter()
            .filter(|(op, _)| op == "USER")
            .map(|(_, a)| a)
            .collect();
        let final_user = users
            .last()
            .unwrap_or_else(|| panic!("{image}: no USER in the final stage"));
        assert_eq!(final_user.as_str(), user, "{image}: user");
        let uid: u32 = final_user
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{image}: numeric uid"));
        assert_ne!(uid, 0, "{image}: root");
        // Exec-form entrypoint, the documented binary, copied from the build stage.
        let (_, ep) = ins
            .iter()
            .rfind(|(op, _)| op == "ENTRYPOINT")
            .unwrap_or_else(|| panic!("{image}: no ENTRYPOINT"));
        let ep: Vec<String> = serde_json::from_str(ep)
            .unwrap_or_else(|e| panic!("{image}: ENTRYPOINT not exec form: {e}"));
        assert_eq!(ep[0], entrypoint, "{image}");
        let binary = Path::new(&entrypoint)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            ins.iter().any(|(op, a)| op == "COPY"
                && a.starts_with("--from=build")
                && a.contains(&format!("target/release/{binary} {entrypoint}"))),
            "{image}: the entrypoint binary is copied from the build stage"
        );
        // The build stage builds a real package and that binary.
        let (_, run) = ins
            .iter()
            .find(|(op, a)| op == "RUN" && a.contains("cargo build"))
            .unwrap_or_else(|| panic!("{image}: no cargo build"));
        let words: Vec<&str> = run.split_whitespace().collect();
        let package = words[words.iter().position(|w| *w == "-p").unwrap() + 1];
        assert!(
            package_exists(package),
            "{image}: package {package} is not in the workspace"
        );
        assert!(
            run.contains(&format!("--bin {binary}")),
            "{image}: builds {binary}"
        );
        assert!(run.contains("--locked"), "{image}: reproducible build");
        // Every path copied from the context exists.
        for (_, args) in ins
            .iter()
            .filter(|(op, a)| op == "COPY" && !a.starts_with("--from"))
        {
            let parts: Vec<&str> = args.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(
                    repo().join(src).exists(),
                    "{image}: COPY {src} does not exist"
                );
            }
        }
        assert!(
            repo()
                .join("images")
                .join(format!("{file}.dockerignore"))
                .exists(),
            "{image}: dockerignore"
        );
    }
}

#[test]
fn runtime_images_default_to_the_contract_paths() {
    for (file, runtime, path) in [
        (
            "kipper-runtime-node.Dockerfile",
            "node",
            "/app/function/index.js",
        ),
        (
            "kipper-runtime-python.Dockerfile",
            "python",
            "/app/function/handler.py",
        ),
    ] {
        let text = std::fs::read_to_string(repo().join("images").join(file)).unwrap();
        assert!(
            text.contains(&format!("KIPPER_RUNTIME={runtime}")),
            "{file}"
        );
        assert!(
            text.contains(&format!("KIPPER_FUNCTION_PATH={path}")),
            "{file}"
        );
        assert!(text.contains("PORT=8080"), "{file}");
        assert!(
            text.contains("KIPPER_WORK_DIR=/tmp/"),
            "{file}: writes only under /tmp"
        );
    }
}

/// `key = "value"` of the workspace manifest's `[workspace.package]` (or `[workspace]`).
fn workspace_value(key: &str) -> String {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("Cargo.toml declares no {key}"))
}

fn workspace_members() -> Vec<String> {
    let members = workspace_value("members");
    members
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// `major.minor` of a version such as `1.89`, `1.89.0` or `22.12.0`.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The image references of every `FROM` of a Dockerfile, in order.
fn bases(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("images").join(file)).unwrap();
    instructions(&text)
        .into_iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, a)| a.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// `cargo build --locked` refuses a toolchain older than the workspace's `rust-version`
/// (kube 5 needs 1.89), and `--locked` refuses a context missing a workspace member: the
/// build stage must use exactly the declared toolchain and copy every member.
#[test]
fn build_stages_use_the_workspace_toolchain_and_copy_every_member() {
    let rust_version = workspace_value("rust-version")
        .trim_matches('"')
        .to_string();
    let members = workspace_members();
    assert!(members.len() >= 4, "{members:?}");
    for [image, file, ..] in documented() {
        let from = &bases(&file)[0];
        let tag = from
            .strip_prefix("rust:")
            .unwrap_or_else(|| panic!("{image}: the build stage is {from}, not rust:<version>"));
        let version = tag.split('-').next().unwrap();
        assert_eq!(
            major_minor(version),
            major_minor(&rust_version),
            "{image}: the build stage's Rust {version} is not the workspace's rust-version {rust_version} \
             (Cargo.toml); change both together"
        );
        let text = std::fs::read_to_string(repo().join("images").join(&file)).unwrap();
        let copied: Vec<String> = instructions(&text)
            .into_iter()
            .filter(|(op, a)| op == "COPY" && !a.starts_with("--from"))
            .flat_map(|(_, a)| {
                let parts: Vec<String> = a.split_whitespace().map(str::to_string).collect();
                parts[..parts.len() - 1].to_vec()
            })
            .collect();
        for member in &members {
            assert!(
                copied.iter().any(|c| c.trim_end_matches('/') == member),
                "{image}: workspace member {member} is not copied into the build stage \
                 (cargo build --locked needs every member)"
            );
        }
    }
}

/// The runtimes the Functions page promises: Node 22 and Python 3.12.
#[test]
fn runtime_images_run_the_seed_runtimes() {
    for (file, name, want) in [
        ("kipper-runtime-node.Dockerfile", "node", (22, u32::MAX)),
        ("kipper-runtime-python.Dockerfile", "python", (3, 12)),
    ] {
        let last = bases(file).last().unwrap().clone();
        let tag = last.strip_prefix(&format!("{name}:")).unwrap_or_else(|| {
            panic!("{file}: final base {last} is not the official {name} image")
        });
        let (major, minor) = major_minor(tag.split('-').next().unwrap());
        assert_eq!(major, want.0, "{file}: {last}");
        if want.1 != u32::MAX {
            assert_eq!(minor, want.1, "{file}: {last}");
        }
        // A slim variant: the full images carry compilers and are ~5x larger.
        assert!(tag.contains("slim"), "{file}: {last} is not a slim image");
    }
}
