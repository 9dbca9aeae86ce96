//! The migrations are embedded at compile time: a migration added or changed rebuilds the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
