//! kipper-bench (being built; see ARCHITECTURE.md).
