//! What the PostgreSQL and MySQL sources share: the mark-done statement
//! templates.

pub mod template;
