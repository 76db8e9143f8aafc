//! The `pgfed` binary: reads the configuration (file, then environment, then flags), sets up
//! logging and the Prometheus endpoint, and runs [`pgfed_proxy::Server`] until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pgfed_config::{Config, LogFormat, Validated};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// pgfed: a PostgreSQL wire-protocol proxy that forwards ordinary statements to an upstream
/// Postgres and (in later versions) answers statements on foreign tables itself.
///
/// Precedence for every setting: command-line flag, then environment variable, then the config
/// file, then the built-in default. Tokio's TOKIO_WORKER_THREADS sets the number of worker threads
/// (default: one per core).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML configuration file (see config/pgfed.toml for every setting and its default).
    #[arg(long, short = 'c', env = "PGFED_CONFIG", global = true)]
    config: Option<PathBuf>,

    /// Address to accept clients on, host:port. Default 127.0.0.1:6432.
    #[arg(long, env = "PGFED_LISTEN", global = true)]
    listen: Option<String>,

    /// Upstream Postgres as a URL: postgres://host:port/database?sslmode=MODE&sslrootcert=FILE.
    /// sslmode is disable, allow, prefer (default), require, verify-ca or verify-full. The database
    /// is used when a client names none. Default postgres://127.0.0.1:5432/postgres?sslmode=prefer.
    #[arg(long, env = "PGFED_UPSTREAM", global = true)]
    upstream: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics (host:port). Default: off.
    #[arg(long, env = "PGFED_METRICS_LISTEN", global = true)]
    metrics_listen: Option<String>,

    /// Log filter, e.g. info, debug, pgfed_proxy=debug. Default: info (or log.level in the file).
    #[arg(long, env = "PGFED_LOG", global = true)]
    log: Option<String>,

    /// Log format: text or json. Default: text (or log.format in the file).
    #[arg(long, env = "PGFED_LOG_FORMAT", global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Validate the configuration (file, environment and flags, and the catalog files it names)
    /// and print the effective settings without starting or connecting. Exits 1 on an invalid
    /// configuration.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let validated = match load(&cli) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("pgfed: invalid configuration: {e:#}");
            return ExitCode::from(1);
        }
    };
    if matches!(cli.command, Some(Command::CheckConfig)) {
        // The catalog files are part of the configuration; checked without touching the database.
        let catalog = match pgfed_federation::check_catalog_files(&validated) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("pgfed: invalid configuration: {e}");
                return ExitCode::from(1);
            }
        };
        print_effective(&validated);
        match catalog {
            Some(d) => println!("catalog files                = {} file(s): {}", d.files.len(), d.summary()),
            None => println!("catalog files                = none"),
        }
        return ExitCode::SUCCESS;
    }
    init_logging(&validated.config);
    // DataFusion plans and pgfed's plan rewrites recurse over deep expression trees; tokio's
    // 2 MiB default stack overflows on joins of a few tables, which would abort every session.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(16 << 20).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgfed: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(validated)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pgfed: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<Validated> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = &cli.listen {
        config.server.listen = v.clone();
    }
    if let Some(v) = &cli.upstream {
        config.upstream.url = v.clone();
    }
    if let Some(v) = &cli.metrics_listen {
        config.metrics.listen = Some(v.clone());
    }
    if let Some(v) = &cli.log {
        config.log.level = v.clone();
    }
    if let Some(v) = &cli.log_format {
        config.log.format = if v == "json" { LogFormat::Json } else { LogFormat::Text };
    }
    EnvFilter::try_new(&config.log.level).with_context(|| format!("invalid log filter {:?}", config.log.level))?;
    Ok(config.validate()?)
}

fn print_effective(v: &Validated) {
    let s = &v.config.server;
    println!("configuration is valid");
    println!("listen                       = {}", v.listen);
    println!("upstream                     = {}", v.upstream);
    println!("upstream.connect_timeout     = {:?}", v.config.upstream.connect_timeout);
    println!("max_connections              = {}", s.max_connections);
    println!("max_message_bytes            = {}", s.max_message_bytes);
    println!("startup_timeout              = {:?}", s.startup_timeout);
    println!("idle_session_timeout         = {:?} (0 = off)", s.idle_session_timeout);
    println!("idle_in_transaction_timeout  = {:?} (0 = off)", s.idle_in_transaction_timeout);
    println!("shutdown_timeout             = {:?}", s.shutdown_timeout);
    match &s.tls {
        Some(t) => {
            println!("tls                          = cert {} key {}", t.cert_file.display(), t.key_file.display())
        }
        None => println!("tls                          = off (SSLRequest answered N)"),
    }
    match v.metrics_listen {
        Some(a) => println!("metrics                      = http://{a}/metrics"),
        None => println!("metrics                      = off"),
    }
    println!("log                          = {} ({:?})", v.config.log.level, v.config.log.format);
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(v: Validated) -> anyhow::Result<()> {
    if let Some(addr) = v.metrics_listen {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("pgfed_upstream_connect_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            )
            .context("metrics buckets")?
            .install()
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%addr, "metrics at /metrics");
    }
    // Before clients are served; a file that fails stops pgfed here, with nothing applied.
    pgfed_federation::apply_catalog_files(&v).await.context("catalog files")?;
    let shutdown = CancellationToken::new();
    let (server, _federation) =
        pgfed_federation::attach(pgfed_proxy::Server::new(&v)?, &v, shutdown.clone()).context("federation engine")?;
    let listener =
        tokio::net::TcpListener::bind(v.listen).await.with_context(|| format!("cannot listen on {}", v.listen))?;
    tokio::spawn(wait_for_signals(shutdown.clone()));
    server.serve(listener, shutdown).await;
    Ok(())
}

/// First SIGTERM/SIGINT starts a graceful shutdown; a second one exits at once.
async fn wait_for_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop pgfed with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received, shutting down (send again to exit at once)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal, exiting now");
    std::process::exit(130);
}
