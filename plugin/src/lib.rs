//! promolens code management, as a WebAssembly component (world `plugin` of
//! `schemas/wit/codes.wit`): authorization state, validation and encoding of a code's parameters
//! within WeChat's limits, the A+C quota, and the code records.
//!
//! The logic ([`service`], [`encoding`], [`batch`]) is plain Rust over the [`service::Host`]
//! trait, unit-tested natively; the wasm build binds that trait to the component's imports.
//! Depends on `schemas` (without Arrow) only; no I/O of its own: every power is a host import.

pub mod batch;
pub mod encoding;
pub mod errors;
pub mod service;

/// The WIT world as Rust types and functions (generated).
pub mod bindings {
    wit_bindgen::generate!({
        path: "../schemas/wit",
        world: "plugin",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

#[cfg(target_arch = "wasm32")]
mod component;

#[cfg(test)]
mod tests;
