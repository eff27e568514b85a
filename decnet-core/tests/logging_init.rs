//! `logging::init` installs the global subscriber once (own process: integration test binary).

use decnet_core::logging::{self, LogFormat};

#[test]
fn init_installs_once() {
    logging::init("decnet.test", LogFormat::Rfc5424).expect("first init");
    tracing::info!(target: "decnet::init_test", answer = 42, "subscriber installed");
    let err = logging::init("decnet.test", LogFormat::Text).expect_err("second init must fail");
    assert!(err.to_string().contains("log subscriber"), "{err}");
}
