//! `[[destinations]]`: each destination's platform, workspace, params, credentials and
//! merged policy, and the checks across destinations (shared pacing scopes). A child of
//! `validate`, sharing its key-path errors and range checks.

use super::{
    B64, BTreeMap, Ctx, Destination, Duration, Engine, Forms, HashMap, Layered, OAUTH_REFRESH,
    Plan, Platform, R, Rate, RateScope, RateUnit, RawDestination, Secret, Workspace, is_http_url,
    join, known_credentials, needs_events_filter, optional_params, platform_list, required_params,
    required_secret, valid_id,
};
// ---------------------------------------------------------------------------------
// Destinations

/// A pacing scope shared across destinations ([`super::scope_key`]).
type ScopeKey = String;
/// The rates a destination sets for one scope: (limit, per, unit is requests), sorted.
type RateSig = Vec<(u64, Duration, bool)>;

pub(super) fn destinations(
    ctx: &Ctx,
    raw: &[RawDestination],
    workspaces: &[Workspace],
    layered: &BTreeMap<Platform, Layered>,
    have_pii_key: bool,
) -> R<Vec<Destination>> {
    let mut out: Vec<Destination> = Vec::new();
    // Scope key → (destination id, its rates for that scope).
    let mut scopes: HashMap<ScopeKey, (String, RateSig)> = HashMap::new();
    for (i, d) in raw.iter().enumerate() {
        let path = format!("destinations[{i}]");
        if !valid_id(&d.id) {
            return Err(ctx.err(
                &join(&path, "id"),
                "must be one or more of A-Z, a-z, 0-9, `_` and `-`",
            ));
        }
        if out.iter().any(|o| o.id == d.id) {
            return Err(ctx.err(
                &join(&path, "id"),
                format!("duplicate destination id `{}`", d.id),
            ));
        }
        let ws = workspaces
            .iter()
            .find(|w| w.id == d.workspace)
            .ok_or_else(|| {
                ctx.err(
                    &join(&path, "workspace"),
                    "names no workspace defined in [[workspaces]]",
                )
            })?;
        let platform = Platform::from_name(&d.platform).ok_or_else(|| {
            ctx.err(
                &join(&path, "platform"),
                format!("unknown platform; expected one of {}", platform_list()),
            )
        })?;
        let pname = platform.name();

        let endpoint = match &d.endpoint {
            Some(e) if !is_http_url(e) => {
                return Err(ctx.err(
                    &join(&path, "endpoint"),
                    "must be an http:// or https:// URL",
                ));
            }
            Some(e) => Some(e.clone()),
            None if platform == Platform::Webhook => {
                return Err(ctx.err(
                    &join(&path, "endpoint"),
                    "missing required key `endpoint`: a webhook destination needs the URL to POST to",
                ));
            }
            None => None,
        };

        let events = match &d.events {
            Some(list) => {
                if list.is_empty() {
                    return Err(
                        ctx.err(&join(&path, "events"), "must list at least one event name")
                    );
                }
                for (j, e) in list.iter().enumerate() {
                    if e.is_empty() {
                        return Err(ctx.err(&format!("{path}.events[{j}]"), "must not be empty"));
                    }
                }
                Some(list.clone())
            }
            None if needs_events_filter(platform) => {
                return Err(ctx.err(
                    &join(&path, "events"),
                    format!(
                        "missing required key `events`: {pname} sends one fixed conversion, so list the event names it receives"
                    ),
                ));
            }
            None => None,
        };

        let event_map = d.event_map.clone().unwrap_or_default();
        for (k, v) in &event_map {
            if k.is_empty() || v.is_empty() {
                return Err(ctx.err(
                    &format!("{path}.event_map.{k}"),
                    "event names must not be empty",
                ));
            }
        }

        let params: BTreeMap<String, String> = d
            .params
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_string()))
            .collect();
        for req in required_params(platform) {
            match params.get(*req) {
                None => {
                    return Err(ctx.err(
                        &format!("{path}.params.{req}"),
                        format!("missing required key `{req}` for platform {pname}"),
                    ));
                }
                Some(v) if v.is_empty() => {
                    return Err(ctx.err(&format!("{path}.params.{req}"), "must not be empty"));
                }
                Some(_) => {}
            }
        }

        let credentials = credentials(ctx, d, platform, &path)?;

        let mut l = layered
            .get(&platform)
            .cloned()
            .unwrap_or_else(|| Layered::new(platform));
        if let Some(pol) = &d.policy {
            if pol.auto_pause.is_some() && ws.plan != Plan::Enterprise {
                return Err(ctx.err(
                    &format!("{path}.policy.auto_pause"),
                    format!(
                        "per-destination auto_pause settings need the enterprise plan (workspace `{}` is on {})",
                        ws.id,
                        super::super::defaults::plan_name(ws.plan)
                    ),
                ));
            }
            l.apply(ctx, pol, &join(&path, "policy"))?;
        }
        let policy = l.finish(ctx)?;
        known_params(ctx, &params, platform, &l.rates, &path)?;

        // Param scopes need the param; shared scopes (one key, one pacer: see
        // `scope_key`) need equal rates.
        let mut by_scope: BTreeMap<String, (String, Option<String>, RateSig)> = BTreeMap::new();
        for (r, rpath) in &l.rates {
            let scope_name = match &r.scope {
                RateScope::Destination => continue,
                RateScope::Token => "token".to_string(),
                RateScope::Param(name) => {
                    if !params.contains_key(name) {
                        let at = rpath
                            .as_ref()
                            .map_or_else(|| join(&path, "params"), |p| join(p, "scope"));
                        return Err(ctx.err(
                            &at,
                            format!(
                                "rate scope `{name}` needs `params.{name}` on destination `{}`",
                                d.id
                            ),
                        ));
                    }
                    name.clone()
                }
            };
            let key = super::super::scope_key(platform, &d.id, &credentials, &params, &r.scope);
            let e = by_scope
                .entry(key)
                .or_insert_with(|| (scope_name, rpath.clone(), Vec::new()));
            e.2.push((r.limit, r.per, r.unit == RateUnit::Requests));
        }
        for (key, (scope_name, rpath, mut rates)) in by_scope {
            rates.sort();
            match scopes.get(&key) {
                Some((other, other_rates)) if *other_rates != rates => {
                    let at = rpath.unwrap_or_else(|| path.clone());
                    return Err(ctx.err(
                        &at,
                        format!(
                            "destination `{}` shares its {scope_name} pacing scope with destination `{other}` but sets a different rate; destinations sharing a scope must set the same rate",
                            d.id
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    scopes.insert(key, (d.id.clone(), rates));
                }
            }
        }

        if platform == Platform::Klaviyo && !have_pii_key {
            return Err(ctx.err(
                &join(&path, "platform"),
                "a klaviyo destination needs `storage.pii_key_env` or `storage.pii_key_file` (email and phone are stored encrypted for it)",
            ));
        }

        out.push(Destination {
            id: d.id.clone(),
            workspace: d.workspace.clone(),
            platform,
            endpoint,
            events,
            event_map,
            params,
            credentials,
            policy,
        });
    }
    Ok(out)
}

/// Every `params` key is one the platform reads ([`required_params`],
/// [`optional_params`]) or one a rate `scope` of the destination names; any other is an
/// error at its path, as unknown credential keys are (a typo such as `pixel-id` or
/// `test_event_cod` would otherwise be ignored in silence).
fn known_params(
    ctx: &Ctx,
    params: &BTreeMap<String, String>,
    platform: Platform,
    rates: &[(Rate, Option<String>)],
    path: &str,
) -> R<()> {
    let (required, optional) = (required_params(platform), optional_params(platform));
    let scoped = |k: &str| {
        rates
            .iter()
            .any(|(r, _)| matches!(&r.scope, RateScope::Param(n) if n == k))
    };
    let Some(unknown) = params
        .keys()
        .find(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) && !scoped(k))
    else {
        return Ok(());
    };
    let pname = platform.name();
    let known: Vec<&str> = required.iter().chain(optional).copied().collect();
    let msg = if known.is_empty() {
        format!(
            "unknown param `{unknown}`: platform {pname} takes no params (a param named by a rate `scope` is allowed)"
        )
    } else {
        format!(
            "unknown param `{unknown}` for platform {pname}; expected {} (or a param named by a rate `scope`)",
            known.join(", ")
        )
    };
    Err(ctx.err(&format!("{path}.params.{unknown}"), msg))
}

fn credentials(
    ctx: &Ctx,
    d: &RawDestination,
    platform: Platform,
    path: &str,
) -> R<BTreeMap<String, Secret>> {
    let table = join(path, "credentials");
    let raw = d.credentials.clone().unwrap_or_default();
    let known = known_credentials(platform);
    // base key → (literal, env, file)
    let mut groups: BTreeMap<String, [Option<String>; 3]> = BTreeMap::new();
    for (k, v) in &raw {
        let (base, slot) = if let Some(b) = k.strip_suffix("_env") {
            (b, 1)
        } else if let Some(b) = k.strip_suffix("_file") {
            (b, 2)
        } else {
            (k.as_str(), 0)
        };
        if let Some(list) = known
            && !list.contains(&base)
        {
            let msg = if list.is_empty() {
                format!(
                    "unknown credential key `{k}`: platform {} takes no credentials (its API is unauthenticated; the account id goes in `params`)",
                    platform.name()
                )
            } else {
                format!(
                    "unknown credential key `{k}` for platform {}; expected {} (each may end in `_env` or `_file`)",
                    platform.name(),
                    list.join(", ")
                )
            };
            return Err(ctx.err(&join(&table, k), msg));
        }
        groups.entry(base.to_string()).or_default()[slot] = Some(v.clone());
    }
    let mut out = BTreeMap::new();
    for (base, [lit, env, file]) in &groups {
        let s = required_secret(
            ctx,
            &table,
            base,
            Forms {
                literal: lit.as_deref(),
                env: env.as_deref(),
                file: file.as_deref(),
            },
        )?;
        out.insert(base.clone(), s);
    }
    let form_path = |base: &str| {
        let [lit, env, _] = groups.get(base).cloned().unwrap_or_default();
        let key = if lit.is_some() {
            base.to_string()
        } else if env.is_some() {
            format!("{base}_env")
        } else {
            format!("{base}_file")
        };
        join(&table, &key)
    };
    let missing = |key: &str| {
        ctx.err(
            &join(&table, key),
            format!(
                "missing required credential `{key}` (or `{key}_env` / `{key}_file`) for platform {}",
                platform.name()
            ),
        )
    };
    match platform {
        Platform::Webhook => {
            let s = out
                .get("signing_secret")
                .ok_or_else(|| missing("signing_secret"))?;
            let ok = s
                .expose()
                .strip_prefix("whsec_")
                .and_then(|b| B64.decode(b).ok())
                .is_some_and(|b| !b.is_empty());
            if !ok {
                return Err(ctx.err(
                    &form_path("signing_secret"),
                    "must be `whsec_` followed by base64 (a Standard Webhooks secret)",
                ));
            }
        }
        Platform::Klaviyo => {
            out.get("api_key").ok_or_else(|| missing("api_key"))?;
        }
        Platform::GoogleAds | Platform::MicrosoftAds => {
            out.get("developer_token")
                .ok_or_else(|| missing("developer_token"))?;
            let have: Vec<&str> = OAUTH_REFRESH
                .iter()
                .copied()
                .filter(|k| out.contains_key(*k))
                .collect();
            if !have.is_empty() && have.len() < OAUTH_REFRESH.len() {
                let absent = OAUTH_REFRESH
                    .iter()
                    .copied()
                    .find(|k| !out.contains_key(*k))
                    .unwrap_or("refresh_token");
                return Err(ctx.err(
                    &join(&table, absent),
                    format!(
                        "missing `{absent}`: OAuth refresh needs all of client_id, client_secret and refresh_token"
                    ),
                ));
            }
            if have.is_empty() && !out.contains_key("access_token") {
                return Err(ctx.err(
                    &join(&table, "access_token"),
                    format!(
                        "missing credentials for platform {}: give `access_token`, or all of client_id, client_secret and refresh_token",
                        platform.name()
                    ),
                ));
            }
        }
        // Unauthenticated APIs: no credential to require (`known_credentials` is empty,
        // so none is accepted either).
        Platform::Taboola | Platform::Outbrain | Platform::Criteo => {}
        _ => {
            out.get("access_token")
                .ok_or_else(|| missing("access_token"))?;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Alerts
