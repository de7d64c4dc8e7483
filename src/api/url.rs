//! Which URLs the client calls, and through which proxy.
//!
//! Guarantees: the API is reached over `https`, or over plain `http` only on a loopback host
//! (a local simulator); a proxy from the environment carries only https traffic to hosts
//! that are not loopback, so no credential travels in clear to a proxy host.

use reqwest::Url;

use super::error::SetupError;

/// Checks a URL for the API: `https`, or `http` to a loopback host only.
pub(crate) fn check_url(what: &str, s: &str) -> Result<Url, SetupError> {
    let refuse = |reason: String| SetupError::Url {
        what: what.to_owned(),
        value: s.chars().take(200).collect(),
        reason,
    };
    let url = Url::parse(s).map_err(|e| refuse(format!("is not a URL ({e})")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(refuse(
            "uses plain http to a host that is not loopback; use https (http:// is only for a local simulator)".into(),
        )),
        other => Err(refuse(format!("has scheme {other:?}; use https"))),
    }
}

/// The environment's proxy as a rule for reqwest: https to a host that is not loopback goes
/// through `HTTPS_PROXY` or `ALL_PROXY` (minus `NO_PROXY`); everything else goes direct.
pub(crate) fn proxy_rule() -> Option<reqwest::Proxy> {
    let proxy = https_proxy()?;
    let rule = reqwest::Proxy::custom(move |u: &Url| {
        (u.scheme() == "https" && !is_loopback(u)).then(|| proxy.clone())
    });
    Some(rule.no_proxy(reqwest::NoProxy::from_env()))
}

/// The proxy for https targets, from `HTTPS_PROXY` or `ALL_PROXY` (either case); never
/// `HTTP_PROXY`, since plain-http targets are loopback only.
fn https_proxy() -> Option<Url> {
    ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .and_then(|v| {
            let v = v.trim();
            Url::parse(v)
                .or_else(|_| Url::parse(&format!("http://{v}")))
                .ok()
        })
}

fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("--base-url", "http://127.0.0.1:8080").is_ok());
        assert!(check_url("--base-url", "http://localhost:1").is_ok());
        assert!(check_url("--base-url", "http://[::1]:1").is_ok());
        assert!(check_url("--base-url", "https://sim.api.example.com").is_ok());
        assert!(
            check_url("--base-url", "http://sim.api.example.com")
                .unwrap_err()
                .to_string()
                .contains("https")
        );
        assert!(check_url("--base-url", "ftp://x").is_err());
        assert!(check_url("--base-url", "not a url").is_err());
    }
}
