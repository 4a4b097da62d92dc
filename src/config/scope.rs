//! Pacing scopes: which budget a rate draws from. Destinations whose rates have the
//! same scope key share one pacer at run time, and config validation requires them to
//! set the same rates. Both ask [`scope_key`], so what validates as one scope always
//! runs as one pacer.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{Destination, Platform, RateScope, Secret};

/// The credentials that name the caller a platform counts requests against, in order:
/// the first one a destination has is its token identity.
const PRIMARY: [&str; 4] = ["access_token", "api_key", "refresh_token", "signing_secret"];

/// The key of the budget a rate with `scope` draws from: `<platform>:destination:<id>`,
/// `<platform>:token:<digest>` (a digest of the destination's primary credential,
/// never the credential itself; all its credentials when it has none of the primary
/// ones), or `<platform>:<param>:<value>`.
pub fn scope_key(
    platform: Platform,
    dest_id: &str,
    credentials: &BTreeMap<String, Secret>,
    params: &BTreeMap<String, String>,
    scope: &RateScope,
) -> String {
    let p = platform.name();
    match scope {
        RateScope::Destination => format!("{p}:destination:{dest_id}"),
        RateScope::Token => {
            let mut h = Sha256::new();
            let primary = PRIMARY
                .iter()
                .find_map(|k| credentials.get(*k).map(|v| (*k, v)));
            let all: Vec<(&str, &Secret)> = match primary {
                Some(kv) => vec![kv],
                None => credentials.iter().map(|(k, v)| (k.as_str(), v)).collect(),
            };
            for (k, v) in all {
                h.update(k.as_bytes());
                h.update([0]);
                h.update(v.expose().as_bytes());
                h.update([0]);
            }
            format!("{p}:token:{}", &hex::encode(h.finalize())[..32])
        }
        RateScope::Param(k) => format!("{p}:{k}:{}", params.get(k).map_or("", String::as_str)),
    }
}

impl Destination {
    /// The budget this destination's rate with `scope` draws from ([`scope_key`]).
    pub fn scope_key(&self, scope: &RateScope) -> String {
        scope_key(
            self.platform,
            &self.id,
            &self.credentials,
            &self.params,
            scope,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(kv: &[(&str, &str)]) -> BTreeMap<String, Secret> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), Secret(v.to_string())))
            .collect()
    }

    #[test]
    fn a_shared_access_token_is_one_scope_whatever_else_differs() {
        let none = BTreeMap::new();
        let a = creds(&[("access_token", "s3cret-at"), ("refresh_token", "r1")]);
        let b = creds(&[("access_token", "s3cret-at"), ("refresh_token", "r2")]);
        let c = creds(&[("access_token", "other"), ("refresh_token", "r1")]);
        let key = |c, id| scope_key(Platform::Tiktok, id, c, &none, &RateScope::Token);
        assert_eq!(key(&a, "d1"), key(&b, "d2"));
        assert_ne!(key(&a, "d1"), key(&c, "d1"));
        assert!(!key(&a, "d1").contains("s3cret"), "never the credential");
        // Without a primary credential, all of them.
        let d = creds(&[("developer_token", "x"), ("client_id", "y")]);
        let e = creds(&[("developer_token", "x"), ("client_id", "z")]);
        assert_ne!(key(&d, "d"), key(&e, "d"));
    }

    #[test]
    fn destination_and_param_scopes() {
        let none = BTreeMap::new();
        let params: BTreeMap<String, String> = [("pixel_id".to_string(), "123".to_string())].into();
        assert_eq!(
            scope_key(
                Platform::Meta,
                "d1",
                &none,
                &params,
                &RateScope::Destination
            ),
            "meta:destination:d1"
        );
        assert_eq!(
            scope_key(
                Platform::Meta,
                "d1",
                &none,
                &params,
                &RateScope::Param("pixel_id".into())
            ),
            "meta:pixel_id:123"
        );
    }
}
