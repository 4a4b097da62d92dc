//! Built-in defaults: the per-platform table of platforms.md, the plan limits of
//! SPEC §2 and the settings each platform requires.

use std::time::Duration;

use super::types::{
    AutoPausePolicy, Plan, Platform, PlatformPolicy, Rate, RateScope, RateUnit, RetryPolicy,
    WorkspaceLimits,
};

const SEC: u64 = 1;
const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

fn rate(limit: u64, per_secs: u64, unit: RateUnit, scope: RateScope) -> Rate {
    Rate {
        limit,
        per: Duration::from_secs(per_secs),
        unit,
        scope,
    }
}

fn param(name: &str) -> RateScope {
    RateScope::Param(name.to_string())
}

/// Default rates, the platform's maximum batch (also the upper bound of a configured
/// `max_batch`) and the age limit (None = `none`).
fn pacing(p: Platform) -> (Vec<Rate>, u32, Option<Duration>) {
    use RateUnit::{Events, Requests};
    let days = |d: u64| Some(Duration::from_secs(d * DAY));
    match p {
        Platform::Meta => (
            vec![rate(1000, MIN, Events, param("pixel_id"))],
            1000,
            days(7),
        ),
        Platform::Tiktok => (
            vec![rate(600, MIN, Requests, RateScope::Token)],
            1000,
            days(7),
        ),
        Platform::Klaviyo => (
            vec![
                rate(350, SEC, Requests, RateScope::Token),
                rate(3500, MIN, Requests, RateScope::Token),
            ],
            1,
            days(365),
        ),
        Platform::Webhook => (Vec::new(), 1, None),
        Platform::GoogleAds => (
            vec![rate(100, SEC, Events, param("customer_id"))],
            2000,
            days(90),
        ),
        Platform::Linkedin => (
            vec![
                rate(600, MIN, Requests, RateScope::Token),
                rate(300_000, DAY, Requests, RateScope::Token),
            ],
            5000,
            days(90),
        ),
        Platform::MicrosoftAds => (Vec::new(), 1000, days(90)),
        Platform::X => (
            vec![rate(100_000, 15 * MIN, Requests, param("pixel_id"))],
            500,
            days(7),
        ),
        Platform::Pinterest => (
            vec![rate(5000, MIN, Requests, param("ad_account_id"))],
            1000,
            days(7),
        ),
        Platform::Snapchat => (Vec::new(), 2000, days(7)),
        Platform::Reddit => (Vec::new(), 1000, Some(Duration::from_secs(168 * HOUR))),
        // No published rate limits (obey 429); ages unverified: 7 days. Taboola's bulk
        // endpoint takes 1,000 actions; Outbrain's postback and Criteo's S2S endpoint
        // carry one conversion each (see the adapters' module docs).
        Platform::Taboola => (Vec::new(), 1000, days(7)),
        Platform::Outbrain | Platform::Criteo => (Vec::new(), 1, days(7)),
    }
}

/// The platform's largest batch: the default and the upper bound of `max_batch`.
pub fn max_batch_limit(p: Platform) -> u32 {
    pacing(p).1
}

/// The scope a `rate` without `scope` gets: the platform's default pacing scope, or
/// `destination` for platforms that are unpaced by default.
pub fn default_scope(p: Platform) -> RateScope {
    pacing(p)
        .0
        .first()
        .map_or(RateScope::Destination, |r| r.scope.clone())
}

/// platforms.md defaults for every policy key. `auto_pause.window` equals `interval`.
pub fn builtin_policy(p: Platform) -> PlatformPolicy {
    let (rates, max_batch, age_limit) = pacing(p);
    PlatformPolicy {
        max_batch,
        linger: Duration::from_secs(1),
        concurrency: 4,
        timeout: Duration::from_secs(10),
        age_limit,
        rates,
        retry: RetryPolicy {
            max_retries: 8,
            base: Duration::from_secs(1),
            max: Duration::from_secs(128),
            jitter: 0.0,
        },
        auto_pause: AutoPausePolicy {
            threshold: 0.25,
            interval: Duration::from_secs(5 * MIN),
            window: Duration::from_secs(5 * MIN),
            sample: 1000,
            min_samples: 10,
            auto_clear: Duration::from_secs(4 * HOUR),
            reprobe: Duration::from_secs(30 * MIN),
            probe_requests: 5,
        },
        watch: super::WatchPolicy::default(),
    }
}

pub fn plan_from_name(s: &str) -> Option<Plan> {
    match s {
        "starter" => Some(Plan::Starter),
        "growth" => Some(Plan::Growth),
        "scale" => Some(Plan::Scale),
        "enterprise" => Some(Plan::Enterprise),
        _ => None,
    }
}

pub fn plan_name(p: Plan) -> &'static str {
    match p {
        Plan::Starter => "starter",
        Plan::Growth => "growth",
        Plan::Scale => "scale",
        Plan::Enterprise => "enterprise",
    }
}

/// SPEC §2 ingress limits by plan (0 = unlimited).
pub fn plan_limits(p: Plan) -> WorkspaceLimits {
    let (rate, burst, monthly_cap) = match p {
        Plan::Starter => (25, 250, 2_000_000),
        Plan::Growth => (100, 1_000, 10_000_000),
        Plan::Scale => (500, 5_000, 100_000_000),
        Plan::Enterprise => (2_000, 20_000, 0),
    };
    WorkspaceLimits {
        rate,
        burst,
        monthly_cap,
    }
}

/// `params` keys a destination of this platform must set.
pub fn required_params(p: Platform) -> &'static [&'static str] {
    match p {
        Platform::Meta | Platform::Snapchat => &["pixel_id"],
        Platform::Tiktok => &["pixel_code"],
        Platform::GoogleAds => &["customer_id", "conversion_action_id"],
        Platform::Linkedin => &["conversion_rule_id"],
        Platform::Pinterest | Platform::Reddit => &["ad_account_id"],
        Platform::Taboola | Platform::Criteo => &["account_id"],
        Platform::X => &["pixel_id", "event_id"],
        Platform::MicrosoftAds => &["customer_id", "account_id", "conversion_name"],
        Platform::Webhook | Platform::Klaviyo | Platform::Outbrain => &[],
    }
}

/// `params` keys a destination of this platform may set besides the required ones: what
/// its adapter (or the OAuth refresh, or a test send) reads. Any other key is an error,
/// except one that a rate `scope` of the destination names (a budget shared by that
/// param's value).
pub fn optional_params(p: Platform) -> &'static [&'static str] {
    match p {
        // Marks test sends (`POST /v1/destinations/{id}/test`), never live traffic.
        Platform::Meta | Platform::Tiktok => &["test_event_code"],
        Platform::GoogleAds => &["login_customer_id", "token_url"],
        Platform::MicrosoftAds => &["token_url"],
        Platform::Linkedin => &["linkedin_version"],
        Platform::Criteo => &["site_type"],
        Platform::Webhook
        | Platform::Klaviyo
        | Platform::Pinterest
        | Platform::Snapchat
        | Platform::Reddit
        | Platform::X
        | Platform::Taboola
        | Platform::Outbrain => &[],
    }
}

pub const OAUTH_REFRESH: [&str; 3] = ["client_id", "client_secret", "refresh_token"];

/// Credential keys a platform knows (an empty list: the platform takes none, so any
/// credential key is an error). `None` would accept any key and require none.
pub fn known_credentials(p: Platform) -> Option<&'static [&'static str]> {
    match p {
        Platform::Webhook => Some(&["signing_secret"]),
        Platform::Klaviyo => Some(&["api_key"]),
        Platform::Meta
        | Platform::Tiktok
        | Platform::Linkedin
        | Platform::Pinterest
        | Platform::Snapchat
        | Platform::Reddit
        | Platform::X => Some(&["access_token"]),
        Platform::GoogleAds | Platform::MicrosoftAds => Some(&[
            "developer_token",
            "access_token",
            "client_id",
            "client_secret",
            "refresh_token",
        ]),
        // Taboola's bulk S2S endpoint, Outbrain's postback and Criteo's S2S endpoint
        // are unauthenticated: the account id (a `params` key) says whose it is.
        Platform::Taboola | Platform::Outbrain | Platform::Criteo => Some(&[]),
    }
}

/// Platforms with one fixed conversion, which need an `events` filter (SPEC §3).
pub fn needs_events_filter(p: Platform) -> bool {
    matches!(
        p,
        Platform::GoogleAds | Platform::Linkedin | Platform::X | Platform::MicrosoftAds
    )
}
