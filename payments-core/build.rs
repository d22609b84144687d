// `embed_migrations!` reads ../migrations at compile time, which cargo does
// not track by itself: without this a new migration is left out of the
// binary until something else changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
