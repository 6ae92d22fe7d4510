//! `hero-host`: serves Spin HTTP components with metrics and JSON logs.

mod cli;
mod kv;
mod manifest;
mod outbound;
mod routes;
mod runtime_config;
mod telemetry;

fn main() {}
