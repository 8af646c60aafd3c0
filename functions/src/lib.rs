//! HealthPay Ledger's Lambda functions. Each binary in `src/bin/` is one function
//! of `template.yaml` and only wires: it builds its AWS clients once per container
//! and hands every invocation to a handler of this library (or of the `api` crate),
//! all of which run on ports and are tested on the sample events in `events/`.

pub mod authorizer;
pub mod aws;
pub mod dead_letters;
pub mod fraud;
pub mod payment_expiry;
pub mod projector;
pub mod publisher;
pub mod redrive;
pub mod saga_starter;
pub mod steps;
pub mod verify;

/// JSON log lines for CloudWatch; `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .init();
}

/// A sample event from `events/`, for tests.
#[cfg(test)]
pub(crate) fn sample<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
