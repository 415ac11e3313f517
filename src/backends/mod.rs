//! How each backend type is run: the program and base environment (`command`), and how an
//! instance's options become its command line (`llama_cpp`).

pub mod command;
pub mod llama_cpp;

pub use command::BackendCommand;
