//! kipper-shim (being built; see ARCHITECTURE.md).
