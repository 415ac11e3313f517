//! How each backend type's command line is built.

pub mod llama_cpp;
