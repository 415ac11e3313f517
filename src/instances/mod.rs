//! Instance definitions: names, the accepted body shapes, and validation.

pub mod name;
pub mod spec;

pub use spec::{BackendType, InstanceSpec, Lifecycle, SpecPatch};
