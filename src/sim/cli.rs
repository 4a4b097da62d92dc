//! `sluice simulate`: one simulator on the system clock until Ctrl-C, printing each
//! request it answers (credentials in headers and the query string are masked).

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Fault, FaultScript, Rule, SimOptions, start_with};
use crate::clock::SystemClock;
use crate::config::Platform;

/// Arguments of `sluice simulate` (flatten into the CLI with `#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Platform to simulate: webhook or any platform name of the config (meta, tiktok,
    /// klaviyo, google_ads, linkedin, pinterest, snapchat, reddit, x, microsoft_ads,
    /// taboola, outbrain, criteo).
    #[arg(long)]
    pub platform: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub listen: SocketAddr,
    /// Answer every Nth request with --fault.
    #[arg(long, value_name = "N")]
    pub fail_every: Option<u64>,
    /// The fault: throttle, auth, transient, invalid, redirect, gone, timeout,
    /// `status:<http>`, `code:<http>:<code>`, `latency:<ms>`.
    #[arg(long, default_value = "transient", value_name = "NAME")]
    pub fault: String,
    /// Retry-After seconds sent with the throttle fault.
    #[arg(long, value_name = "SECS")]
    pub retry_after: Option<u64>,
    /// Delay before every answer.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: i64,
    /// Credential to expect (access token, API key, or the webhook's whsec_ secret, whose
    /// signatures are then verified). Unset: any credential passes.
    #[arg(
        long,
        env = "SLUICE_SIM_CREDENTIAL",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub credential: Option<String>,
}

impl SimulateArgs {
    /// The script these arguments describe.
    pub fn script(&self) -> anyhow::Result<FaultScript> {
        let mut s = FaultScript::none().with_latency(self.latency_ms);
        if let Some(n) = self.fail_every {
            if n == 0 {
                anyhow::bail!("--fail-every must be at least 1");
            }
            let fault = Fault::parse(&self.fault, self.retry_after).map_err(anyhow::Error::msg)?;
            s = s.with(Rule::Every { n, fault });
        }
        Ok(s)
    }
}

/// Runs one simulator until Ctrl-C.
pub async fn run_cli(args: SimulateArgs) -> anyhow::Result<()> {
    let platform = Platform::from_name(&args.platform)
        .ok_or_else(|| anyhow::anyhow!("unknown platform `{}`", args.platform))?;
    let script = args.script()?;
    let secrets: Vec<String> = args.credential.iter().cloned().collect();
    let server = start_with(
        platform,
        args.listen,
        Arc::new(SystemClock),
        script,
        SimOptions {
            rate_limits: None,
            credential: args.credential.clone(),
        },
    )
    .await?;
    server.enable_control();
    println!(
        "simulating {} on http://{} (Ctrl-C to stop; change faults with POST http://{}/_sim/faults)",
        platform.name(),
        server.addr,
        server.addr
    );
    let mut rx = server.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            r = rx.recv() => match r {
                Ok(r) => {
                    let path = mask_query(&r.path);
                    let path = crate::platforms::redact(&path, &secrets);
                    println!("#{} {} {} -> {}", r.seq, r.method, path, r.status);
                    for (k, v) in &r.headers {
                        let shown = if matches!(k.as_str(), "authorization" | "access-token") {
                            "[redacted]".to_string()
                        } else {
                            v.clone()
                        };
                        println!("  {k}: {shown}");
                    }
                    let body = if r.body.is_null() {
                        String::from_utf8_lossy(&r.raw_body).into_owned()
                    } else {
                        serde_json::to_string_pretty(&r.body).unwrap_or_default()
                    };
                    println!("{body}");
                    if let Some(answer) = &r.error_body {
                        println!("  answered {}: {answer}", r.status);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("({n} requests not shown)");
                }
                Err(_) => break,
            },
        }
    }
    server.shutdown().await;
    Ok(())
}

/// Replaces the value of `access_token` in a path's query.
fn mask_query(path: &str) -> String {
    let Some((p, q)) = path.split_once('?') else {
        return path.to_string();
    };
    let q: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some(("access_token", _)) => "access_token=[redacted]".to_string(),
            _ => kv.to_string(),
        })
        .collect();
    format!("{p}?{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimulateArgs,
    }

    #[test]
    fn flattens_and_builds_a_script() {
        let c = Cli::parse_from([
            "sluice",
            "--platform",
            "tiktok",
            "--listen",
            "127.0.0.1:0",
            "--fail-every",
            "3",
            "--fault",
            "throttle",
            "--retry-after",
            "2",
            "--latency-ms",
            "50",
        ]);
        let s = c.sim.script().unwrap();
        assert_eq!(s.latency_ms, 50);
        assert_eq!(s.fault_for(2), None);
        assert_eq!(
            s.fault_for(3),
            Some(&Fault::Throttle {
                retry_after: Some(super::super::RetryAfter::Seconds(2))
            })
        );
        assert_eq!(
            mask_query("/v24.0/1/events?access_token=abc&x=1"),
            "/v24.0/1/events?access_token=[redacted]&x=1"
        );
    }
}
