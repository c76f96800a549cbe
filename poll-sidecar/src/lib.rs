//! kipper-poll (being built; see ARCHITECTURE.md).
