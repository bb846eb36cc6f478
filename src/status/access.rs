//! Who may read the supervisor address (`/`, `/status/*`, `/healthz`,
//! `/metrics`). Loopback peers are trusted (the board's own user, or
//! `ssh -L`); any other peer must send `Authorization: Bearer <token>` with
//! the `[auth]` token. Binding to a non-loopback address is refused by the
//! config check unless `supervisor.allow_remote = true` and a token is set.

use std::net::IpAddr;

/// Whether a request from `peer` must carry the token. With
/// `trust_loopback = false` every peer must (for boards where other local
/// users should not see the camera, and for tests of the refusal).
pub fn needs_token(peer: IpAddr, trust_loopback: bool) -> bool {
    let loopback = match peer {
        IpAddr::V4(v4) => v4.is_loopback(),
        // `::ffff:127.0.0.1` on a dual-stack socket is loopback too.
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    !(trust_loopback && loopback)
}

/// Whether an `Authorization` header value carries `token` as a bearer
/// token. Compared in constant time; no token configured: nobody matches.
pub fn bearer_matches(header: Option<&[u8]>, token: Option<&str>) -> bool {
    let (Some(header), Some(token)) = (header, token) else {
        return false;
    };
    let Some(given) = header.strip_prefix(b"Bearer ") else {
        return false;
    };
    let want = token.as_bytes();
    if given.len() != want.len() {
        return false;
    }
    given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_is_trusted_and_nothing_else() {
        for trusted in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(!needs_token(ip(trusted), true), "{trusted}");
            assert!(needs_token(ip(trusted), false), "{trusted}");
        }
        for other in [
            "192.168.1.20",
            "10.0.0.1",
            "0.0.0.0",
            "::ffff:192.168.1.20",
            "fe80::1",
            "2001:db8::1",
        ] {
            assert!(needs_token(ip(other), true), "{other}");
        }
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let t = Some("s3cret");
        assert!(bearer_matches(Some(b"Bearer s3cret"), t));
        assert!(!bearer_matches(Some(b"Bearer s3cre"), t));
        assert!(!bearer_matches(Some(b"Bearer s3cretX"), t));
        assert!(!bearer_matches(Some(b"bearer s3cret"), t));
        assert!(!bearer_matches(Some(b"s3cret"), t));
        assert!(!bearer_matches(None, t));
        assert!(!bearer_matches(Some(b"Bearer "), None));
    }
}
