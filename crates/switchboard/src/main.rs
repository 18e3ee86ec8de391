//! `switchboard`: the SIP routing engine daemon and its operator commands.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::{client, config, explain, policy_source, server};

/// The daemon allocates and frees many small buffers per message; mimalloc measured faster
/// than the system allocator under load (see the commit that added it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "switchboard", version, about = "SIP routing engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (without --config: the embedded default, listening on 127.0.0.1:5060).
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and the policy it names; print every error.
    Check {
        /// Configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// See and change presence through the running daemon's API.
    Presence {
        /// Configuration file (to find the API's address).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The API's address (default: the config's api.listen).
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
        /// Bearer token: a person's api_token, or the admin token.
        #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
        token: String,
        #[command(subcommand)]
        action: PresenceAction,
    },
    /// Print the plan a call would get, step by step, and why.
    Explain {
        /// Configuration file (its policy is explained).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The caller: a user id or extension, `trunk:NAME`, or an external number.
        #[arg(long)]
        from: String,
        /// What is dialled: an extension, user id, DID or number.
        #[arg(long)]
        to: String,
        /// When: 2026-11-23T14:00 (UTC) or RFC 3339. Default: now.
        #[arg(long)]
        at: Option<String>,
        /// A person's status, e.g. alice=dnd (repeatable).
        #[arg(long)]
        presence: Vec<String>,
        /// A person's active profile, e.g. alice=meeting (repeatable).
        #[arg(long)]
        profile: Vec<String>,
        /// A person already in a call (repeatable).
        #[arg(long)]
        in_call: Vec<String>,
        /// A person with no registered device (repeatable; others have one).
        #[arg(long)]
        offline: Vec<String>,
        /// Who answered the previous call to a group, e.g. support=bob (repeatable).
        #[arg(long)]
        last_answerer: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PresenceAction {
    /// Everyone's status, profile, message and call status.
    List,
    /// Set a person's status (available, away, busy, dnd, custom, unavailable, on_break,
    /// after_call_work); a custom status takes its text from --message.
    Set {
        user: String,
        status: String,
        #[arg(long)]
        message: Option<String>,
    },
    /// Activate a profile (id or number) until a time, for a length, or for its standard
    /// length.
    Profile {
        user: String,
        profile: String,
        /// End time: HH:MM (today, UTC) or RFC 3339.
        #[arg(long, conflicts_with = "for_")]
        until: Option<String>,
        /// Length: 45m, 1h30m.
        #[arg(long = "for")]
        for_: Option<String>,
        /// A temporary status message for this activation.
        #[arg(long)]
        message: Option<String>,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<config::Config, config::ConfigErrors> {
    match path {
        Some(p) => config::Config::load(p),
        None => config::Config::embedded(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            init_logging();
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(server::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Explain {
            config,
            from,
            to,
            at,
            presence,
            profile,
            in_call,
            offline,
            last_answerer,
        } => {
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let policy = match policy_source::load(&config) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let scenario = explain::Scenario {
                from,
                to,
                at,
                presence,
                profiles: profile,
                in_call,
                offline,
                last_answerer,
            };
            match explain::explain(&policy, &scenario, chrono::Utc::now()) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Presence {
            config,
            api,
            token,
            action,
        } => {
            let addr = match api {
                Some(a) => a,
                None => match load_config(config.as_ref()).map(|c| c.api_listen) {
                    Ok(Some(a)) => a,
                    Ok(None) => {
                        eprintln!("error: the configuration turns the presence API off");
                        return ExitCode::FAILURE;
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            let c = client::Client { addr, token };
            let result = match action {
                PresenceAction::List => c.call("GET", "/v1/presence", None).map(|v| {
                    v["people"]
                        .as_array()
                        .map(|people| {
                            people
                                .iter()
                                .map(client::format_person)
                                .collect::<Vec<_>>()
                                .join("\n")
                        })
                        .unwrap_or_default()
                }),
                PresenceAction::Set {
                    user,
                    status,
                    message,
                } => c
                    .call(
                        "PUT",
                        &format!("/v1/presence/{user}/status"),
                        Some(&client::status_body(&status, message.as_deref())),
                    )
                    .map(|v| client::format_person(&v)),
                PresenceAction::Profile {
                    user,
                    profile,
                    until,
                    for_,
                    message,
                } => client::profile_body(
                    &profile,
                    until.as_deref(),
                    for_.as_deref(),
                    message.as_deref(),
                )
                .and_then(|b| c.call("PUT", &format!("/v1/presence/{user}/profile"), Some(&b)))
                .map(|v| client::format_person(&v)),
            };
            match result {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => {
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match policy_source::load(&config) {
                Ok(_) => {
                    println!("{}: configuration and policy are valid", config.source);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
