//! The daemon under test: the release binary as a child process on a temp dir, its
//! config, and stopping it (its exit timed, its CPU kept for the run's totals).

use crate::*;

pub(crate) struct Daemon {
    pub(crate) bin: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) child: Option<Child>,
    pub(crate) pid: u32,
    pub(crate) base: String,
    /// Jiffies of daemons this process already reaped.
    pub(crate) reaped_cpu: u64,
}

impl Daemon {
    pub(crate) fn new(config: PathBuf, log: PathBuf, port: u16) -> Daemon {
        Daemon {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
            config,
            log,
            child: None,
            pid: 0,
            base: format!("http://127.0.0.1:{port}"),
            reaped_cpu: 0,
        }
    }

    pub(crate) fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot clone the log handle: {e}"))?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        self.pid = child.id();
        self.child = Some(child);
        Ok(())
    }

    pub(crate) fn running(&self) -> bool {
        self.child.is_some()
    }

    pub(crate) fn mem(&self) -> Mem {
        if self.running() {
            mem_of(self.pid).unwrap_or_default()
        } else {
            Mem::default()
        }
    }

    /// Whether the child has exited already (a zombie not yet reaped counts as exited).
    pub(crate) fn exited(&self) -> bool {
        proc_cpu(self.pid).is_none_or(|(state, _)| state == 'Z' || state == 'X')
    }

    /// SIGTERM, wait for the exit (SIGKILL after `grace`); the exit status and how long
    /// it took.
    pub(crate) fn stop(
        &mut self,
        grace: Duration,
    ) -> Result<(Duration, std::process::ExitStatus), String> {
        let Some(mut child) = self.child.take() else {
            return Err("the daemon is not running".into());
        };
        let t0 = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let mut killed = false;
        loop {
            // Read its CPU time while it is a zombie (gone once reaped, so no try_wait).
            match proc_cpu(self.pid) {
                Some(('Z', j)) => {
                    self.reaped_cpu += j;
                    break;
                }
                None => break,
                Some(_) => {}
            }
            if !killed && t0.elapsed() > grace {
                let _ = child.kill();
                killed = true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = child.wait().map_err(|e| format!("wait: {e}"))?;
        let took = t0.elapsed();
        if killed {
            return Err(format!(
                "the daemon did not exit within {grace:?} of SIGTERM; killed ({status})"
            ));
        }
        Ok((took, status))
    }

    /// The last `n` lines of its log.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) fn write_config(path: &Path, store: &Path, port: u16, hook_url: &str) {
    let text = format!(
        r#"# Written by benches/soak.rs.
[server]
listen = "127.0.0.1:{port}"
admin_token = "{ADMIN_TOKEN}"
max_events_per_request = {FILL_BATCH}
max_body_bytes = 4194304

[storage]
path = "{store}"

[[workspaces]]
id = "bulk"
plan = "enterprise"
ingest_keys = ["{BULK_KEY}"]
limits = {{ rate = 0, burst = 0, monthly_cap = 0 }}

[[workspaces]]
id = "shop"
plan = "enterprise"
ingest_keys = ["{SHOP_KEY}"]
limits = {{ rate = 0, burst = 0, monthly_cap = 0 }}

[[destinations]]
id = "{HOOK}"
workspace = "shop"
platform = "webhook"
endpoint = "{hook_url}"
credentials = {{ signing_secret = "{WHSEC}" }}
policy = {{ rate = {{ limit = 0, per = "1m" }}, max_batch = 1, concurrency = 64 }}
"#,
        store = store.display()
    );
    std::fs::write(path, text).expect("write the daemon's config");
}
