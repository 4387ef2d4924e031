//! `maas-controller`: parses the command line, sets up logging and the runtime, and hands
//! over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use maas_controller::cli::CliArgs;
use maas_controller::config::Role;
use tokio_util::sync::CancellationToken;

/// A provisioning controller: DHCP (PXE and HTTP boot), TFTP, boot HTTP, enlistment, power,
/// discovery, a caching proxy and an HTTP JSON API over one durable store.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/controller.toml"))]
    config: PathBuf,
    /// What this process is (overrides the file's `[controller] role`).
    #[arg(long, value_parser = parse_role)]
    role: Option<Role>,
    /// Load and check the file, print every problem, and exit.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The command line over a running controller's API.
    Cli(CliArgs),
    /// Users, on the store directly (while the controller is stopped).
    #[command(subcommand)]
    User(maas_controller::admin::UserCommand),
    /// API tokens, on the store directly (while the controller is stopped).
    #[command(subcommand)]
    Token(maas_controller::admin::TokenCommand),
    /// Boot resources, on the store directly (while the controller is stopped).
    #[command(subcommand)]
    BootResource(maas_controller::admin::ResourceCommand),
    /// Copies a whole state into an empty store: from a state directory into PostgreSQL, or
    /// back (while no controller uses either). Each side is a state directory, a
    /// `postgresql://` URL, or `url-file:PATH` (a file holding the URL, keeping its password
    /// off the command line).
    CopyState {
        /// Where the state is now.
        #[arg(long)]
        from: String,
        /// The empty store to copy it into.
        #[arg(long)]
        to: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Cli(cli)) = &args.command {
        return maas_controller::cli::main(cli);
    }
    if let Some(Command::CopyState { from, to }) = &args.command {
        return maas_controller::admin::copy_state(from, to);
    }
    let quiet = args.command.is_some();
    if !quiet {
        maas_controller::logging::init();
    }
    let config = match maas_controller::config::load(&args.config, args.role) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{}: {} problem(s):", args.config.display(), problems.len());
            for p in &problems {
                eprintln!("  - {p}");
            }
            if !quiet {
                tracing::error!(event = "refused", config = %args.config.display(), problems = ?problems);
            }
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok ({})", args.config.display(), config.summary());
        return ExitCode::SUCCESS;
    }
    match &args.command {
        Some(Command::User(command)) => return maas_controller::admin::user(&config, command),
        Some(Command::Token(command)) => return maas_controller::admin::token(&config, command),
        Some(Command::BootResource(command)) => {
            return maas_controller::admin::resource(&config, command);
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    runtime.spawn(stop_on_signal(shutdown.clone()));
    let code = match runtime.block_on(maas_controller::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(event = "failed", error = %e);
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    maas_controller::logging::flush();
    code
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let name = match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    };
    tracing::info!(event = "stopping", signal = name);
    shutdown.cancel();
}
