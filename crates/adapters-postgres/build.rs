//! Rebuilds the crate when a migration is added or edited, so the
//! `embed_migrations!` in `src/migrate.rs` always embeds the current set.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
