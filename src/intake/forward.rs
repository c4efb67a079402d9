//! Forward mode's HTTP client (`API_URL`): HTTPS through rustls, trusting `API_CA_FILE` when
//! it is set and the system's roots otherwise.

use std::path::Path;
use std::time::Duration;

/// How long one post to the API may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// The client that posts to `api_url`.
///
/// # Errors
/// `API_CA_FILE` is set for an `http://` URL, cannot be read or holds no certificate; or the
/// URL is neither `http://` nor `https://`.
pub fn client(api_url: &str, ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let https = match api_url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
    {
        Some(scheme) if scheme == "https" => true,
        Some(scheme) if scheme == "http" => false,
        _ => anyhow::bail!("API_URL must start with http:// or https://"),
    };
    if !https && ca_file.is_some() {
        anyhow::bail!("API_CA_FILE applies to https:// API_URLs only; API_URL is http://");
    }
    if !https && !is_loopback(api_url) {
        tracing::warn!(
            "API_URL is plain http:// to another host: tokens and requests travel unencrypted \
             (use https:// with API_CA_FILE)"
        );
    }
    let tls = crate::tls::client_config(ca_file, "API_CA_FILE")?;
    Ok(reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .tls_backend_preconfigured(tls)
        .build()?)
}

/// A failed post, with its causes (a TLS failure says why: an unknown issuer, a wrong host
/// name, …), without the URL.
pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_for_a_plain_url_is_refused_naming_both() {
        let e = client("http://api:8000", Some(Path::new("/nonexistent"))).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("API_CA_FILE") && text.contains("http://"),
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_ca_file_is_named() {
        let e = client("https://api:8443", Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            format!("{e:#}").contains("API_CA_FILE /nonexistent/ca.pem"),
            "{e:#}"
        );
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:8000/api/v1/dns/create"));
        assert!(is_loopback("http://LOCALHOST:8000"));
        assert!(is_loopback("http://[::1]:8000"));
        assert!(!is_loopback("http://api:8000"));
    }
}
