//! llamactl: one long-lived server that runs many local LLM inference servers (llama.cpp's
//! `llama-server`) behind one REST API, with definitions, keys and history in SQLite.

pub mod app;
pub mod audit;
pub mod auth;
pub mod backends;
pub mod cli;
pub mod config;
pub mod db;
pub mod definitions;
pub mod error;
pub mod files;
pub mod http;
pub mod names;
pub mod supervisor;
pub mod timestamp;
pub mod upstream;

pub use app::Application;
pub use config::Config;
pub use error::{Error, Result};
