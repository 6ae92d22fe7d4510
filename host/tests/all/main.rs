//! Integration tests: the real `hero-host` binary serving real components
//! over real HTTP. One test binary, as wasmtime does it.

mod api;
mod clients;
mod crowds;
mod data_model;
mod hardening;
mod host;
mod k8s;
mod observability;
mod reuse;
mod spin_apps;
mod spin_serving;
mod startup;
mod support;
mod traces;
