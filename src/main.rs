//! The `sluice` command line: parse arguments, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::cli::{self, Client, Target};

const DEFAULT_CONFIG: &str = "/etc/sluice/sluice.toml";

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Durable conversion-event relay to ad platforms",
    after_help = "Client commands (destinations, audit, dlq, events, report, backup, reload) talk to the \
running daemon: the URL comes from --url, else server.listen of --config; the admin token \
from SLUICE_API_KEY, else the admin-token settings of --config. Exit codes: 0 success, \
1 failure, 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon: SIGTERM/SIGINT drain and stop, SIGHUP reloads the config.
    Serve {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Configuration tools: `config check [PATH]` validates a file.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Run a local simulator of a platform's API (for drills and tests).
    Simulate(sluice::sim::SimulateArgs),
    /// Rehearse a peak (Black Friday by default) against simulated platforms on a fast
    /// clock, and write a report with a pass/fail verdict.
    Drill(sluice::drill::DrillArgs),
    /// Destination state: status, pause, resume, its request log, test sends (talks to
    /// the running daemon).
    Destinations {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: DestCmd,
    },
    /// The audit chain: verify or export it (talks to the running daemon).
    Audit {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// The dead-letter queue: list, replay or discard a destination's entries, or count
    /// them per destination and reason (talks to the running daemon).
    Dlq {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: DlqCmd,
    },
    /// Where an event is: its fate at each destination of its workspace (talks to the
    /// running daemon).
    Events {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: EventsCmd,
    },
    /// Reports over what the daemon counts: `report accuracy` is delivery accuracy per
    /// destination and hour (talks to the running daemon).
    Report {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: ReportCmd,
    },
    /// Write a consistent copy of the store under storage.backup_dir while the daemon
    /// runs (talks to the running daemon; never overwrites a file); `backup verify FILE`
    /// checks a copy offline.
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        cmd: Option<BackupCmd>,
        #[command(flatten)]
        target: Target,
        /// File name of the copy (letters, digits, '.', '_', '-'); default
        /// sluice-<UTC time>.redb, e.g. sluice-20261204T161500Z.redb.
        #[arg(long)]
        name: Option<String>,
    },
    /// Make the running daemon re-read its config file (as SIGHUP does); an invalid file
    /// keeps the running config, and exits 1 with what is wrong (talks to the running
    /// daemon).
    Reload {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand)]
enum BackupCmd {
    /// Open a backup read-only (no daemon needed) and check that it opens, its schema and
    /// its audit chain (exit 1 when any fails).
    Verify {
        /// The backup file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Per destination and hour of acceptance: events routed, delivered, delivered by a
    /// DLQ replay, dead-lettered by reason, still pending, and the share delivered.
    Accuracy {
        /// From this time (RFC 3339); default 24 hours ago.
        #[arg(long)]
        since: Option<String>,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
    },
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Each stored event with this id and its fate per destination (exit 1 when the
    /// store knows none inside storage.dedup_window).
    Trace {
        /// The event's `event_id`.
        event_id: String,
        /// Its workspace.
        #[arg(long)]
        workspace: String,
        /// Only the event with this `event_name`.
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum DlqCmd {
    /// Print the matching entries as JSON Lines (count on stderr).
    List(DlqListArgs),
    /// Move the matching entries still within the platform's age limit back to the queue.
    Replay(DlqChange),
    /// Delete the matching entries.
    Discard(DlqChange),
    /// Count the entries per destination and reason.
    Summary {
        /// Only entries dead-lettered at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(clap::Args)]
struct DlqListArgs {
    #[command(flatten)]
    select: DlqSelect,
    /// Only entries of this reason: rejected, retries_exhausted, expired, unsendable.
    #[arg(long)]
    reason: Option<String>,
    /// Only entries of the event with this event_id.
    #[arg(long)]
    event_id: Option<String>,
}

#[derive(clap::Args)]
struct DlqSelect {
    /// Destination id.
    #[arg(long)]
    destination: String,
    /// First-seen time from (RFC 3339, inclusive).
    #[arg(long)]
    from: Option<String>,
    /// First-seen time to (RFC 3339, exclusive).
    #[arg(long)]
    to: Option<String>,
}

/// What `dlq replay|discard` take: the selection, and --dry-run (`list` changes nothing,
/// so it takes no --dry-run).
#[derive(clap::Args)]
struct DlqChange {
    #[command(flatten)]
    select: DlqSelect,
    /// Say what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum DestCmd {
    /// Table of destinations, then a suggestion line per paused one.
    Status {
        /// Redraw every 2 s until interrupted.
        #[arg(long)]
        live: bool,
        /// Only this workspace's destinations.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Pause one destination (--id) or all of a platform (--platform [--workspace]).
    Pause(Select),
    /// Resume one destination (--id) or all of a platform (--platform [--workspace]).
    Resume(Select),
    /// The destination's last requests, newest first: time, events, status, latency,
    /// outcome, the platform's request id and the start of its answer.
    Requests {
        /// Destination id.
        id: String,
        /// How many requests to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Send one synthetic event to a destination, marked as a test where the platform
    /// offers that, and print the platform's verdict (exit 1 unless delivered).
    Test {
        /// Destination id.
        id: String,
        /// Send even where the request cannot be marked as a test: a real event the
        /// platform counts.
        #[arg(long)]
        live: bool,
        /// Event name (default: the first of the destination's `events`, else Purchase).
        #[arg(long)]
        event_name: Option<String>,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["id", "platform"])))]
struct Select {
    /// One destination, by id.
    #[arg(long)]
    id: Option<String>,
    /// Every destination of this platform (e.g. meta).
    #[arg(long)]
    platform: Option<String>,
    /// With --platform: only this workspace's destinations.
    #[arg(long, requires = "platform")]
    workspace: Option<String>,
    /// Why (1–500 characters); recorded in the timeline and the audit chain.
    #[arg(long)]
    reason: String,
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check every link and hash of the chain (exit 1 when broken); with --file, an
    /// export's JSON Lines, without a daemon.
    Verify {
        /// An export (`sluice audit export > FILE`) to check offline.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Print the chain as JSON Lines, oldest first.
    Export,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate a config file and print a summary (exit 0 valid, 1 invalid).
    Check {
        /// Config file.
        #[arg(default_value = DEFAULT_CONFIG)]
        path: PathBuf,
    },
}

fn init_logging(level: &str) {
    let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    let pinned = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    // `server.log_level` follows reloads unless RUST_LOG decides.
    if !pinned {
        sluice::app::on_log_level(Box::new(move |level: &str| {
            match tracing_subscriber::EnvFilter::builder().parse(level) {
                Ok(f) => {
                    if handle.reload(f).is_ok() {
                        tracing::info!(log_level = level, "log level changed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "log level not changed"),
            }
        }));
    }
}

async fn select(c: &Client, action: &str, s: Select) -> anyhow::Result<ExitCode> {
    cli::pause_resume(
        c,
        action,
        s.id.as_deref(),
        s.platform.as_deref(),
        s.workspace.as_deref(),
        &s.reason,
    )
    .await
}

/// Runs a client command: exit codes per SPEC §9 (0 ok, 1 failure; clap gives 2).
fn client_command<F, Fut>(target: &Target, f: F) -> ExitCode
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let client = match Client::new(target) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(f(client)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// An offline command's result: exit 1 with the error on failure.
fn offline(r: anyhow::Result<ExitCode>) -> ExitCode {
    r.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(1)
    })
}

/// Runs `fut` on a fresh multi-thread runtime; exit 1 with the error on failure.
fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.cmd {
        Cmd::Serve { config } => match sluice::config::create_missing_admin_token_file(&config)
            .map_err(|e| format!("cannot create server.admin_token_file: {e}"))
            .and_then(|made| {
                if let Some(p) = made {
                    eprintln!(
                        "created the admin token file {} (mode 0600): the admin API takes it as the bearer token, and the CLI reads it through --config {}",
                        p.display(),
                        config.display()
                    );
                }
                sluice::config::load(&config).map_err(|e| e.to_string())
            }) {
            Ok(cfg) => {
                init_logging(&cfg.server.log_level);
                block_on(sluice::app::serve(config, cfg))
            }
            Err(e) => {
                eprintln!("error: {}: {e}", config.display());
                ExitCode::from(1)
            }
        },
        Cmd::Destinations { target, cmd } => client_command(&target, |c| async move {
            match cmd {
                DestCmd::Status { live, workspace } => {
                    cli::status(&c, workspace.as_deref(), live).await
                }
                DestCmd::Pause(s) => select(&c, "pause", s).await,
                DestCmd::Resume(s) => select(&c, "resume", s).await,
                DestCmd::Requests { id, limit } => cli::requests(&c, &id, limit as usize).await,
                DestCmd::Test {
                    id,
                    live,
                    event_name,
                } => cli::test_send(&c, &id, live, event_name.as_deref()).await,
            }
        }),
        Cmd::Dlq { target, cmd } => client_command(&target, |c| async move {
            let (action, sel) = match cmd {
                DlqCmd::List(l) => {
                    let sel = cli::DlqList {
                        destination: &l.select.destination,
                        from: l.select.from.as_deref(),
                        to: l.select.to.as_deref(),
                        reason: l.reason.as_deref(),
                        event_id: l.event_id.as_deref(),
                    };
                    return cli::dlq_list(&c, &sel).await;
                }
                DlqCmd::Summary { since } => return cli::dlq_summary(&c, since.as_deref()).await,
                DlqCmd::Replay(s) => (cli::DlqAction::Replay, s),
                DlqCmd::Discard(s) => (cli::DlqAction::Discard, s),
            };
            cli::dlq(
                &c,
                action,
                &sel.select.destination,
                sel.select.from.as_deref(),
                sel.select.to.as_deref(),
                sel.dry_run,
            )
            .await
        }),
        Cmd::Report {
            target,
            cmd: ReportCmd::Accuracy { since, destination },
        } => client_command(&target, |c| async move {
            cli::report_accuracy(&c, since.as_deref(), destination.as_deref()).await
        }),
        Cmd::Events {
            target,
            cmd:
                EventsCmd::Trace {
                    event_id,
                    workspace,
                    name,
                },
        } => client_command(&target, |c| async move {
            cli::events_trace(&c, &event_id, &workspace, name.as_deref()).await
        }),
        Cmd::Reload { target } => client_command(&target, |c| async move { cli::reload(&c).await }),
        Cmd::Backup {
            target,
            name,
            cmd: None,
        } => client_command(&target, |c| async move {
            cli::backup(&c, name.as_deref()).await
        }),
        Cmd::Audit {
            cmd: AuditCmd::Verify { file: Some(file) },
            ..
        } => offline(cli::audit_verify_file(&file)),
        Cmd::Backup {
            cmd: Some(BackupCmd::Verify { file }),
            ..
        } => offline(cli::backup_verify(&file)),
        Cmd::Audit { target, cmd } => client_command(&target, |c| async move {
            match cmd {
                AuditCmd::Verify { .. } => cli::audit_verify(&c).await,
                AuditCmd::Export => cli::audit_export(&c).await,
            }
        }),
        Cmd::Drill(args) => {
            init_logging("error");
            sluice::drill::main(args)
        }
        Cmd::Simulate(args) => {
            init_logging("info");
            block_on(sluice::sim::run_cli(args))
        }
        Cmd::Config {
            cmd: ConfigCmd::Check { path },
        } => match sluice::config::load(&path) {
            Ok(cfg) => {
                println!("{} is valid", path.display());
                print!("{}", sluice::config::summary(&cfg));
                if cfg.workspaces.is_empty() {
                    eprintln!(
                        "warning: {}: no [[workspaces]]: every ingest request is answered 401 until one is added",
                        path.display()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ExitCode::from(1)
            }
        },
    }
}
