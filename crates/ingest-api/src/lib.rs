//! Convrelay's HTTP API and command line: configuration, routes, authentication, problem+json
//! errors, the events journal and its group-commit writer.

pub mod app;
pub mod auth;
pub mod body;
pub mod config;
pub mod db;
pub mod erase;
pub mod ids;
pub mod ingest;

pub mod keys;
pub mod metrics;

pub mod problem;
pub mod query;
pub mod read;
pub mod reports;
pub mod responses;
pub mod routes;
pub mod telemetry;
pub mod writer;

pub use app::Application;
pub use config::Settings;
