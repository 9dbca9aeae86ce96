//! Helpers shared by the tests: a fresh database per test on the real PostgreSQL, created from a
//! migrated template, and a TCP proxy that a test can cut to play "the database went away".
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod db;
mod proxy;

pub use db::TestDb;
pub use proxy::Proxy;

/// The repository's root folder.
pub fn repo_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap().to_path_buf()
}
