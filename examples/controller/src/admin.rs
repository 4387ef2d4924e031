//! `maas-controller user ...` and `maas-controller token ...`: users and tokens managed on the
//! store directly, so that the first admin can be made before anything runs. The store is
//! one process's at a time: while the controller runs, use `maas-controller cli` with an
//! admin token instead.

use std::process::ExitCode;

use maas_net::Timestamp;

use crate::config::Config;
use crate::state::State;
use crate::state::auth::UserRole;

/// `maas-controller user ...`.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user.
    Add {
        /// The name: 1 to 32 of a-z, 0-9, `.`, `_`, `-`, starting with a letter.
        name: String,
        /// admin, operator or viewer.
        #[arg(long, value_parser = parse_role)]
        role: String,
    },
    /// List users.
    List,
    /// Remove a user and their tokens.
    Remove {
        /// The name.
        name: String,
    },
}

/// `maas-controller token ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token for a user and print it (it is shown only this once).
    Create {
        /// The user.
        #[arg(long)]
        user: String,
        /// Days until it stops working (default: never).
        #[arg(long)]
        expires_in_days: Option<u64>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List tokens (ids, owners, dates; never secrets).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by its id.
    Revoke {
        /// The id (16 hex digits, from `token list`).
        id: String,
    },
}

/// `maas-controller boot-resource ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ResourceCommand {
    /// Import a boot resource built by scripts/build-ephemeral.sh: DIR holds manifest.json,
    /// the kernel and the initrd; a checksum that does not match refuses it whole.
    Import {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// List imported boot resources.
    List,
}

/// Runs a `boot-resource` command on the store of `config`.
pub fn resource(config: &Config, command: &ResourceCommand) -> ExitCode {
    let state = match open(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        ResourceCommand::Import { dir } => {
            crate::state::resources::import(&config.controller.state_dir, dir, Timestamp::now())
                .map_err(|e| e.to_string())
                .and_then(|resource| {
                    state
                        .put_resource(resource.clone())
                        .and_then(|ticket| state.durable_blocking(ticket))
                        .map(|()| pretty(&serde_json::json!(resource)))
                        .map_err(|e| e.to_string())
                })
        }
        ResourceCommand::List => Ok(pretty(&serde_json::json!(state.resources()))),
    };
    finish(&state, result)
}

fn parse_role(text: &str) -> Result<String, String> {
    text.parse::<UserRole>().map(|r| r.as_str().to_string())
}

/// Opens the store of `config` for a command, or says why not (a running controller holds
/// it).
fn open(config: &Config) -> Result<State, String> {
    let at = crate::state::StoreAt::of(config)?;
    std::fs::create_dir_all(&config.controller.state_dir)
        .map_err(|e| format!("{}: {e}", config.controller.state_dir.display()))?;
    State::open_at(&at, &config.topology, &config.machines).map_err(|e| {
        format!(
            "{}: {e}\n(if the controller is running, it holds the store: use `maas-controller cli` with an admin token)",
            config.controller.state_dir.display()
        )
    })
}

fn finish(state: &State, result: Result<String, String>) -> ExitCode {
    let closed = state.close().map_err(|e| e.to_string());
    match result.and_then(|out| closed.map(|()| out)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Runs a `user` command on the store of `config`.
pub fn user(config: &Config, command: &UserCommand) -> ExitCode {
    let state = match open(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = Timestamp::now();
    let result = match command {
        UserCommand::Add { name, role } => role
            .parse::<UserRole>()
            .and_then(|role| state.add_user(name, role, now).map_err(|e| e.to_string()))
            .and_then(|(user, ticket)| {
                state
                    .durable_blocking(ticket)
                    .map(|()| pretty(&serde_json::json!(user)))
                    .map_err(|e| e.to_string())
            }),
        UserCommand::List => Ok(pretty(&serde_json::json!(state.users()))),
        UserCommand::Remove { name } => state
            .remove_user(name)
            .map_err(|e| e.to_string())
            .and_then(|(user, ticket)| {
                state
                    .durable_blocking(ticket)
                    .map(|()| pretty(&serde_json::json!(user)))
                    .map_err(|e| e.to_string())
            }),
    };
    finish(&state, result)
}

/// Runs a `token` command on the store of `config`.
pub fn token(config: &Config, command: &TokenCommand) -> ExitCode {
    let state = match open(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = Timestamp::now();
    let result = match command {
        TokenCommand::Create {
            user,
            expires_in_days,
            description,
        } => {
            let expires =
                expires_in_days.map(|d| Timestamp(now.0.saturating_add(d.saturating_mul(86_400))));
            state
                .create_token(user, expires, description.clone(), now)
                .map_err(|e| e.to_string())
                .and_then(|(token, _, ticket)| {
                    state
                        .durable_blocking(ticket)
                        .map(|()| token.to_string())
                        .map_err(|e| e.to_string())
                })
        }
        TokenCommand::List { user } => Ok(pretty(&serde_json::Value::Array(
            state
                .tokens(user.as_deref())
                .iter()
                .map(|t| t.shown())
                .collect(),
        ))),
        TokenCommand::Revoke { id } => id
            .parse()
            .map_err(|_| format!("{id:?} is not a token id (16 hex digits)"))
            .and_then(|id| state.revoke_token(id).map_err(|e| e.to_string()))
            .and_then(|(record, ticket)| {
                state
                    .durable_blocking(ticket)
                    .map(|()| pretty(&record.shown()))
                    .map_err(|e| e.to_string())
            }),
    };
    finish(&state, result)
}

/// On a store without users: makes `admin` and a token for it, written to
/// `<state_dir>/admin-token` (mode 0600); the file's path, or `None` when users exist.
pub(crate) fn first_admin(
    state: &State,
    dir: &std::path::Path,
) -> Result<Option<std::path::PathBuf>, crate::Error> {
    if !state.users().is_empty() {
        return Ok(None);
    }
    let now = Timestamp::now();
    let path = dir.join("admin-token");
    let (_, ticket) = state.add_user("admin", UserRole::Admin, now)?;
    let (token, _, ticket2) =
        state.create_token("admin", None, Some("made at first start".into()), now)?;
    state.durable_blocking(ticket)?;
    state.durable_blocking(ticket2)?;
    let _ = std::fs::remove_file(&path);
    crate::rack::write_private(&path, format!("{token}\n").as_bytes())
        .map_err(|e| crate::Error::io("writing the first admin token", e))?;
    Ok(Some(path))
}

/// Where `copy-state` reads or writes: a `postgresql://` (or `postgres://`) URL, `url-file:`
/// and a file holding such a URL, or a state directory (its embedded store).
fn store_spec(spec: &str) -> Result<crate::state::StoreAt, String> {
    use crate::state::StoreAt;
    if spec.starts_with("postgresql://") || spec.starts_with("postgres://") {
        return Ok(StoreAt::Postgres(spec.to_owned()));
    }
    if let Some(path) = spec.strip_prefix("url-file:") {
        return std::fs::read_to_string(path)
            .map(|text| StoreAt::Postgres(text.trim().to_owned()))
            .map_err(|e| format!("{path}: {e}"));
    }
    let dir = std::path::Path::new(spec);
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{spec}: {e}"))?;
    }
    Ok(StoreAt::embedded(dir))
}

/// Copies a whole state, from an embedded store into PostgreSQL or back (`FROM` and `TO`
/// as `store_spec` reads them). Neither may be in use; the target must be empty.
pub fn copy_state(from: &str, to: &str) -> ExitCode {
    let result = store_spec(from).and_then(|from| {
        let to = store_spec(to)?;
        crate::state::copy(&from, &to).map_err(|e| e.to_string())
    });
    match result {
        Ok(copied) => {
            let mut parts = vec![
                format!("{} address records", copied.addresses),
                format!("{} client bindings", copied.bindings),
            ];
            parts.extend(copied.records.iter().map(|(what, n)| format!("{n} {what}")));
            println!("copied: {}", parts.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
