//! llamactl: one long-lived server that runs many local LLM inference servers (llama.cpp's
//! `llama-server`) behind one REST API, with definitions, keys and history in SQLite.

pub(crate) mod activity;
pub mod app;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod backends;
pub mod cli;
pub mod config;
pub(crate) mod db;
pub(crate) mod definitions;
pub mod error;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod http;
pub mod memory;
pub(crate) mod metering;
pub(crate) mod metrics;
pub(crate) mod names;
pub(crate) mod quota;
pub(crate) mod supervisor;
pub(crate) mod throttle;
pub(crate) mod timestamp;
pub(crate) mod ui;
pub(crate) mod upstream;

pub use app::Application;
pub use config::Config;
pub use error::{Error, Result};
pub use files::private_umask;
