//! The smallest useful WASIp3 HTTP component: the runtime floor in benchmarks.

/// Answers every request with a greeting.
#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_service]
async fn handle(_request: spin_sdk::http::Request) -> &'static str {
    "Hello, world!\n"
}
