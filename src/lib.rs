//! wharf: a private container image registry.
//!
//! Requests flow one way: `http` → `registry` → `store`, with `oci` as the shared vocabulary
//! underneath. `cli` is the command line on top.

pub mod alloc;
pub mod auth;
pub mod autosecure;
pub mod cli;
pub mod config;
pub mod http;
pub mod kube;
pub mod mdns;
pub mod notify;
pub mod oci;
pub mod registry;
pub mod store;
pub mod tls;
