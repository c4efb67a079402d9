//! HTTP clients with bearer tokens, and the first run's admin token. Included by the test
//! crates that talk to a running dnsorch.

use std::path::Path;
use std::time::Duration;

/// A client without a token (ring installed as the default TLS provider first, which
/// reqwest's own configuration needs).
#[allow(dead_code)]
pub(crate) fn plain_client() -> reqwest::Client {
    dnsorch::tls::install_default_provider();
    reqwest::Client::new()
}

/// A client that sends `token` as its bearer token (marked sensitive, so no log prints it).
pub(crate) fn client_with(token: &str) -> reqwest::Client {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    value.set_sensitive(true);
    let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
    dnsorch::tls::install_default_provider();
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The admin token that the first `dnsorch run` wrote beside its database in `dir`, if any.
pub(crate) fn first_run_admin_token(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("dnsorch-admin.token"))
        .ok()
        .map(|token| token.trim().to_owned())
}
