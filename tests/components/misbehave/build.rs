//! Rebuilds the component when its WIT contract changes: `wit_bindgen::generate!` reads the
//! files but does not tell cargo about them.
fn main() {
    println!("cargo:rerun-if-changed=../../../schemas/wit");
}
