//! Integration tests: the real `hero-host` binary serving real components
//! over real HTTP. One test binary, as wasmtime does it.

mod api;
mod hardening;
mod host;
mod k8s;
mod observability;
mod reuse;
mod support;
mod traces;
