//! The subcommands that have more than a few lines of their own, one file each; `main.rs`
//! parses the command line and hands each over.

pub mod access;
pub mod codes;
pub mod serve;
