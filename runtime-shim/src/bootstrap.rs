//! The language bootstrap files, embedded in the binary so the image needs
//! nothing beside it, and written into the work directory at start.

use std::path::{Path, PathBuf};

use crate::config::Runtime;
use crate::{Error, Result};

/// The node worker: loads the handler and answers framed invocations.
pub const NODE: &str = include_str!("../bootstrap/node.js");
/// The python worker: loads the handler and answers framed invocations.
pub const PYTHON: &str = include_str!("../bootstrap/python.py");

/// Writes the bootstrap of `runtime` into `dir`; returns its path.
pub fn write(dir: &Path, runtime: Runtime) -> Result<PathBuf> {
    let (name, text) = match runtime {
        Runtime::Node => ("kipper-bootstrap.cjs", NODE),
        Runtime::Python => ("kipper_bootstrap.py", PYTHON),
    };
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| Error::Io {
        what: "cannot write the bootstrap file",
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstraps_are_written_out() {
        let dir = tempfile::tempdir().unwrap();
        let node = write(dir.path(), Runtime::Node).unwrap();
        assert_eq!(std::fs::read_to_string(node).unwrap(), NODE);
        let py = write(dir.path(), Runtime::Python).unwrap();
        assert!(
            std::fs::read_to_string(py)
                .unwrap()
                .contains("def serve_sync")
        );
    }
}
