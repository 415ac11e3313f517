//! Instance definitions: names, the accepted body shapes, validation of what an API caller may
//! choose (options, environment), and how secret-looking values are shown.

pub mod environment;
pub mod name;
pub mod options;
pub mod secrets;
pub mod spec;

pub use spec::{InstanceSpec, QueueLimits, SpecPatch};
