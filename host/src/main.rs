//! `hero-host`: serves Spin HTTP components with metrics and JSON logs.

fn main() {}
