//! The `sluice` command line: parse arguments, set up logging, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const DEFAULT_CONFIG: &str = "/etc/sluice/sluice.toml";

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Durable conversion-event relay to ad platforms"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Serve {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Run a local simulator of a platform's API (for drills and tests).
    Simulate(sluice::sim::SimulateArgs),
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
        Cmd::Serve { config } => match sluice::config::load(&config) {
            Ok(cfg) => {
                init_logging(&cfg.server.log_level);
                block_on(sluice::app::serve(config, cfg))
            }
            Err(e) => {
                eprintln!("error: {}: {e}", config.display());
                ExitCode::from(1)
            }
        },
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
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                ExitCode::from(1)
            }
        },
    }
}
