//! Deterministic fault scripts: which request gets which named fault. Never random.

/// `Retry-After` as a simulator sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Delta-seconds.
    Seconds(u64),
    /// An HTTP date this many seconds after the simulator's clock.
    HttpDate { in_secs: i64 },
}

/// A named fault. Each platform's simulator answers it in that platform's shape (see
/// the platform modules); the names are the same everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The platform's throttle signal: Meta HTTP 400 code 17, TikTok HTTP 200 code
    /// 40100, Klaviyo and webhook HTTP 429. `Retry-After` is sent only when given.
    Throttle { retry_after: Option<RetryAfter> },
    /// Bad credentials: Meta 400 code 190, TikTok 200 code 40105, Klaviyo and webhook 401.
    Auth,
    /// The platform's transient error: Meta 503 code 2, TikTok 200 with an unknown code
    /// (50000), Klaviyo and webhook 503.
    Transient,
    /// A validation error: Meta 400 code 100, TikTok 200 code 40002, Klaviyo and
    /// webhook 400.
    Invalid,
    /// This status with the platform's error body carrying `code` (Meta `error.code`,
    /// TikTok `code` (status usually 200), Klaviyo `errors[0].code` as a string).
    Code { status: u16, code: i64 },
    /// This status with a plain-text body (as a proxy or load balancer would answer).
    ServerError(u16),
    /// `307` to `/moved` on the same server (a client must not follow it).
    Redirect,
    /// `410 Gone`.
    Gone,
    /// No answer until the simulator's clock has moved [`TIMEOUT_HOLD_MS`] past the
    /// request (then `504`), or until shutdown.
    Timeout,
    /// Answer normally after this many ms of the simulator's clock.
    Latency(i64),
}

/// How long [`Fault::Timeout`] holds a request, on the simulator's clock.
pub const TIMEOUT_HOLD_MS: i64 = 3_600_000;

impl Fault {
    /// Parses a CLI fault name: `throttle`, `auth`, `transient`, `invalid`, `redirect`,
    /// `gone`, `timeout`, `status:<http>`, `code:<http>:<code>`, `latency:<ms>`.
    /// `retry_after` (seconds) goes with `throttle`.
    pub fn parse(name: &str, retry_after: Option<u64>) -> Result<Fault, String> {
        let mut parts = name.split(':');
        let head = parts.next().unwrap_or("");
        let num = |p: Option<&str>| -> Result<i64, String> {
            p.and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| format!("fault `{name}` needs a number after `:`"))
        };
        let f = match head {
            "throttle" => Fault::Throttle {
                retry_after: retry_after.map(RetryAfter::Seconds),
            },
            "auth" => Fault::Auth,
            "transient" => Fault::Transient,
            "invalid" => Fault::Invalid,
            "redirect" => Fault::Redirect,
            "gone" => Fault::Gone,
            "timeout" => Fault::Timeout,
            "status" | "server_error" => Fault::ServerError(status(num(parts.next())?)?),
            "code" => {
                let s = status(num(parts.next())?)?;
                Fault::Code {
                    status: s,
                    code: num(parts.next())?,
                }
            }
            "latency" => Fault::Latency(num(parts.next())?.max(0)),
            _ => {
                return Err(format!(
                    "unknown fault `{name}` (throttle, auth, transient, invalid, redirect, gone, timeout, status:<http>, code:<http>:<code>, latency:<ms>)"
                ));
            }
        };
        Ok(f)
    }
}

fn status(n: i64) -> Result<u16, String> {
    if (100..=599).contains(&n) {
        Ok(n as u16)
    } else {
        Err(format!("{n} is not an HTTP status"))
    }
}

/// One rule. Request numbers are 1-based and count the requests received since the
/// script was installed (`start` or `set_script`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Requests n, 2n, 3n, …
    Every { n: u64, fault: Fault },
    /// Requests `from..=to`.
    Range { from: u64, to: u64, fault: Fault },
    /// Every request ("from now on", with `set_script`).
    Always(Fault),
}

/// Rules checked in order; the first that matches a request decides its fault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultScript {
    pub rules: Vec<Rule>,
    /// Added before every answer (on the simulator's clock).
    pub latency_ms: i64,
}

impl FaultScript {
    /// No faults: every request is answered as the platform would a good one.
    pub fn none() -> Self {
        Self::default()
    }

    pub fn every(n: u64, fault: Fault) -> Self {
        Self::none().with(Rule::Every { n, fault })
    }

    pub fn range(from: u64, to: u64, fault: Fault) -> Self {
        Self::none().with(Rule::Range { from, to, fault })
    }

    pub fn always(fault: Fault) -> Self {
        Self::none().with(Rule::Always(fault))
    }

    pub fn with(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    pub fn with_latency(mut self, ms: i64) -> Self {
        self.latency_ms = ms.max(0);
        self
    }

    /// The fault of request `nth` (1-based), if any.
    pub fn fault_for(&self, nth: u64) -> Option<&Fault> {
        self.rules.iter().find_map(|r| match r {
            Rule::Every { n, fault } if *n > 0 && nth.is_multiple_of(*n) => Some(fault),
            Rule::Range { from, to, fault } if (*from..=*to).contains(&nth) => Some(fault),
            Rule::Always(fault) => Some(fault),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins() {
        let s = FaultScript::range(2, 3, Fault::Auth).with(Rule::Every {
            n: 3,
            fault: Fault::Gone,
        });
        assert_eq!(s.fault_for(1), None);
        assert_eq!(s.fault_for(2), Some(&Fault::Auth));
        assert_eq!(s.fault_for(3), Some(&Fault::Auth));
        assert_eq!(s.fault_for(6), Some(&Fault::Gone));
        assert_eq!(s.fault_for(7), None);
    }

    #[test]
    fn parses_cli_names() {
        assert_eq!(
            Fault::parse("throttle", Some(3)).unwrap(),
            Fault::Throttle {
                retry_after: Some(RetryAfter::Seconds(3))
            }
        );
        assert_eq!(
            Fault::parse("code:400:17", None).unwrap(),
            Fault::Code {
                status: 400,
                code: 17
            }
        );
        assert_eq!(
            Fault::parse("status:503", None).unwrap(),
            Fault::ServerError(503)
        );
        assert!(Fault::parse("explode", None).is_err());
        assert!(Fault::parse("status:9999", None).is_err());
    }
}
