//! The load: the do-nothing receiver `hook` delivers to, the realistic events the
//! generator posts over reqwest (timed windows and fixed ranges), and the admin calls.

use crate::*;

/// What arrived at the receiver.
pub(crate) struct Arrivals {
    pub(crate) n: u64,
    /// One bit per queued event (`q-<index>`, index < n).
    pub(crate) seen: Vec<AtomicU64>,
    pub(crate) base: Instant,
    pub(crate) requests: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) distinct: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) unexpected: AtomicU64,
    /// Nanoseconds after `base` of the last first-time arrival.
    pub(crate) last_new_ns: AtomicU64,
}

impl Arrivals {
    pub(crate) fn new(n: u64) -> Arrivals {
        Arrivals {
            n,
            seen: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            base: Instant::now(),
            requests: AtomicU64::new(0),
            events: AtomicU64::new(0),
            distinct: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            last_new_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, body: &[u8]) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut ids = Vec::new();
        match v.get("events").and_then(Value::as_array) {
            Some(list) => ids.extend(list.iter().map(|e| e["event_id"].as_str())),
            None => ids.push(v["event_id"].as_str()),
        }
        for id in ids {
            self.events.fetch_add(1, Ordering::Relaxed);
            let index = id
                .and_then(|id| id.strip_prefix(QUEUED_PREFIX))
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|i| i.parse::<u64>().ok())
                .filter(|i| *i < self.n);
            let Some(i) = index else {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let bit = 1u64 << (i % 64);
            let before = self.seen[(i / 64) as usize].fetch_or(bit, Ordering::Relaxed);
            if before & bit == 0 {
                self.distinct.fetch_add(1, Ordering::Relaxed);
                self.last_new_ns
                    .fetch_max(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
            } else {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn last_new(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_new_ns.load(Ordering::Relaxed))
    }
}

pub(crate) async fn receive(State(a): State<Arc<Arrivals>>, body: Bytes) -> impl IntoResponse {
    a.record(&body);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{}",
    )
}

pub(crate) struct Receiver {
    pub(crate) served: Served,
    pub(crate) url: String,
    pub(crate) arrivals: Arc<Arrivals>,
}

impl Receiver {
    pub(crate) fn start(n: u64) -> Receiver {
        let arrivals = Arc::new(Arrivals::new(n));
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(arrivals.clone());
        let served = Served::start(runtime("recv-rt"), router, "the receiver");
        Receiver {
            url: format!("http://{}/hook", served.addr),
            served,
            arrivals,
        }
    }

    pub(crate) fn stop(self) {
        self.served.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Load: realistic events over reqwest

pub(crate) const NAMES: [&str; 5] = [
    "Purchase",
    "AddToCart",
    "Lead",
    "ViewContent",
    "InitiateCheckout",
];

pub(crate) fn now_secs() -> i64 {
    support::now_ms() / 1000
}

/// One event, about 300 bytes of JSON; `<prefix>-<i>` is its id.
pub(crate) fn push_event(out: &mut String, prefix: &str, i: u64, now: i64) {
    let name = NAMES[(i % NAMES.len() as u64) as usize];
    let _ = write!(
        out,
        r#"{{"event_id":"{prefix}-{i}","event_name":"{name}","event_time":{now},"action_source":"website","event_source_url":"https://shop.example.com/checkout/thank-you","user_data":{{"email":"Buyer.{i}@Example.com","client_ip_address":"203.0.{}.{}"}},"custom_data":{{"value":{}.{:02},"currency":"EUR"}}}}"#,
        (i / 250) % 250,
        i % 250 + 1,
        5 + i % 500,
        i % 100
    );
}

/// Events `first..first+count` of `prefix`: one event object when `single`, else
/// `{"events": [...]}`.
pub(crate) fn body(prefix: &str, first: u64, count: u64, single: bool) -> String {
    let now = now_secs();
    let mut out = String::with_capacity(count as usize * 330 + 16);
    if single {
        push_event(&mut out, prefix, first, now);
        return out;
    }
    out.push_str(r#"{"events":["#);
    for i in first..first + count {
        if i > first {
            out.push(',');
        }
        push_event(&mut out, prefix, i, now);
    }
    out.push_str("]}");
    out
}

/// What a load run sent and got back.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) requests: u64,
    pub(crate) sent: u64,
    pub(crate) accepted: u64,
    pub(crate) duplicates: u64,
    /// Answers other than 202.
    pub(crate) bad_status: u64,
    /// 202 answers whose `accepted` was not the number of events sent.
    pub(crate) short: u64,
    pub(crate) transport: u64,
    pub(crate) samples: Vec<String>,
    /// Time of each request until its answer was read, µs.
    pub(crate) lat_us: Vec<u32>,
}

impl Tally {
    pub(crate) fn note(&mut self, what: String) {
        if self.samples.len() < 5 {
            self.samples.push(what);
        }
    }

    pub(crate) fn merge(&mut self, o: Tally) {
        self.requests += o.requests;
        self.sent += o.sent;
        self.accepted += o.accepted;
        self.duplicates += o.duplicates;
        self.bad_status += o.bad_status;
        self.short += o.short;
        self.transport += o.transport;
        for s in o.samples {
            self.note(s);
        }
        self.lat_us.extend(o.lat_us);
    }

    /// `p50 / p99 / max` of the answer times.
    pub(crate) fn latency(&mut self) -> String {
        if self.lat_us.is_empty() {
            return "-".into();
        }
        self.lat_us.sort_unstable();
        let l = &self.lat_us;
        let at = |q: f64| Duration::from_micros(u64::from(l[((l.len() - 1) as f64 * q) as usize]));
        format!(
            "p50 {} / p99 {} / max {}",
            fmt_dur(at(0.5)),
            fmt_dur(at(0.99)),
            fmt_dur(at(1.0))
        )
    }

    pub(crate) fn failures(&self) -> u64 {
        self.bad_status + self.short + self.transport
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} requests, {} events sent, {} accepted, {} duplicates; non-202 {}, short 202 {}, transport errors {}{}",
            fmt_int(self.requests),
            fmt_int(self.sent),
            fmt_int(self.accepted),
            fmt_int(self.duplicates),
            self.bad_status,
            self.short,
            self.transport,
            if self.samples.is_empty() {
                String::new()
            } else {
                format!("; e.g. {}", self.samples.join(" | "))
            }
        )
    }
}

pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: String,
    n: u64,
    t: &mut Tally,
) {
    t.requests += 1;
    t.sent += n;
    let t0 = Instant::now();
    let resp = client
        .post(url)
        .bearer_auth(key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            t.lat_us
                .push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            if status != 202 {
                t.bad_status += 1;
                t.note(format!(
                    "{status}: {}",
                    text.chars().take(200).collect::<String>()
                ));
                return;
            }
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let accepted = v["accepted"].as_u64().unwrap_or(0);
            t.accepted += accepted;
            t.duplicates += v["duplicates"].as_u64().unwrap_or(0);
            if accepted != n {
                t.short += 1;
                t.note(format!(
                    "202 accepted {accepted} of {n}: {}",
                    text.chars().take(200).collect::<String>()
                ));
            }
        }
        Err(e) => {
            t.transport += 1;
            t.note(format!("transport: {e}"));
        }
    }
}

pub(crate) struct Load {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) client: reqwest::Client,
    pub(crate) url: String,
}

impl Load {
    pub(crate) fn new(base: &str, conns: usize) -> Load {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(RATE_CONNS.max(conns))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        Load {
            rt: runtime("load-rt"),
            client,
            url: format!("{base}/v1/events"),
        }
    }

    /// `conns` connections posting `per_req` events per request (`per_req` 1: single
    /// event objects) for `secs`; ids `<tag><conn>-<i>`. The tally and the time until the
    /// last answer.
    pub(crate) fn timed(
        &self,
        key: &'static str,
        tag: &str,
        conns: usize,
        per_req: u64,
        secs: u64,
    ) -> (Tally, Duration) {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(secs);
        let tally = self.rt.block_on(async {
            let tasks: Vec<_> = (0..conns)
                .map(|c| {
                    let client = self.client.clone();
                    let url = self.url.clone();
                    let prefix = format!("{tag}{c}");
                    tokio::spawn(async move {
                        let mut t = Tally::default();
                        let mut i = 0u64;
                        while Instant::now() < deadline {
                            let b = body(&prefix, i, per_req, per_req == 1);
                            i += per_req;
                            post(&client, &url, key, b, per_req, &mut t).await;
                        }
                        t
                    })
                })
                .collect();
            let mut all = Tally::default();
            for t in tasks {
                all.merge(t.await.expect("load task"));
            }
            all
        });
        (tally, start.elapsed())
    }

    /// Events `from..to` of `prefix` in `batch`-event requests over `conns` connections.
    pub(crate) fn range(
        &self,
        key: &'static str,
        prefix: &'static str,
        from: u64,
        to: u64,
        conns: usize,
    ) -> Tally {
        let next = Arc::new(AtomicU64::new(from));
        self.rt.block_on(async {
            let tasks: Vec<_> = (0..conns)
                .map(|_| {
                    let client = self.client.clone();
                    let url = self.url.clone();
                    let next = next.clone();
                    tokio::spawn(async move {
                        let mut t = Tally::default();
                        loop {
                            let first = next.fetch_add(FILL_BATCH, Ordering::Relaxed);
                            if first >= to {
                                break;
                            }
                            let n = FILL_BATCH.min(to - first);
                            let b = body(prefix, first, n, false);
                            post(&client, &url, key, b, n, &mut t).await;
                        }
                        t
                    })
                })
                .collect();
            let mut all = Tally::default();
            for t in tasks {
                all.merge(t.await.expect("load task"));
            }
            all
        })
    }
}

// ---------------------------------------------------------------------------------------
// Admin calls (on the load runtime)

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) took: Duration,
}

pub(crate) fn call(
    load: &Load,
    client: &reqwest::Client,
    method: &str,
    url: &str,
    json: Option<&str>,
) -> Result<Answer, String> {
    let t0 = Instant::now();
    load.rt.block_on(async {
        let mut req = match method {
            "POST" => client.post(url),
            _ => client.get(url),
        };
        if url.contains("/v1/") {
            req = req.bearer_auth(ADMIN_TOKEN);
        }
        if let Some(j) = json {
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(j.to_string());
        }
        let r = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = r.status().as_u16();
        let body = r.text().await.map_err(|e| format!("{method} {url}: {e}"))?;
        Ok(Answer {
            status,
            body,
            took: t0.elapsed(),
        })
    })
}

pub(crate) fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// Polls `/readyz` every 20 ms from `since` until 200; fails if the daemon exits or
/// `limit` passes.
pub(crate) fn wait_ready(
    load: &Load,
    d: &Daemon,
    since: Instant,
    limit: Duration,
) -> Result<Duration, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client");
    let url = format!("{}/readyz", d.base);
    loop {
        if let Ok(a) = call(load, &client, "GET", &url, None)
            && a.status == 200
        {
            return Ok(since.elapsed());
        }
        if d.exited() {
            return Err(format!(
                "the daemon exited before it was ready; its log ends:\n{}",
                d.log_tail(20)
            ));
        }
        if since.elapsed() > limit {
            return Err(format!(
                "not ready after {limit:?}; its log ends:\n{}",
                d.log_tail(20)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `sluice_queue_depth` of `hook` in a `/metrics` body.
pub(crate) fn queue_depth(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("sluice_queue_depth{"))
        .find(|l| l.contains(&format!("destination=\"{HOOK}\"")))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}
