//! kipper-controller (being built; see ARCHITECTURE.md).
