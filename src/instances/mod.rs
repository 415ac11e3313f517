//! Instance definitions: names, the accepted body shapes, and validation of what an API caller may
//! choose (options, environment).

pub mod environment;
pub mod name;
pub mod options;
pub mod spec;

pub use spec::{BackendType, InstanceSpec, Lifecycle, SpecPatch};
