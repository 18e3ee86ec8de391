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

/// How an operator command reaches the running daemon's API as its admin.
#[derive(clap::Args)]
struct AdminArgs {
    /// Configuration file (to find the API's address and the admin token).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The API's address (default: the config's api.listen).
    #[arg(long)]
    api: Option<std::net::SocketAddr>,
    /// The admin token (default: the config's api.admin_token).
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The API's address (default: the config's api.listen).
        #[arg(long, global = true)]
        api: Option<std::net::SocketAddr>,
        /// Bearer token: a person's api_token, or the admin token (before or after the
        /// action).
        #[arg(long, global = true, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        action: PresenceAction,
    },
    /// Reload the running daemon's policy (as SIGHUP does) and print what changed or why
    /// the running policy stays.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
        /// Apply the policy even if it removes most users, or all of them (such a reload
        /// is otherwise refused: `[policy.reload]` of the config).
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Print every trunk with its registration at its carrier (registered until…, the
    /// last error, the next attempt) and the addresses of the host names among its
    /// sources, from the running daemon.
    Trunks {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the registered devices (who, contact, from where, which phone, until when),
    /// from the running daemon.
    Registrations {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this person's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Print the calls in progress (being set up: their plan step and who rings;
    /// answered: who answered), from the running daemon.
    Calls {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print call records (one per call, written when it ends), oldest first: by time,
    /// person, team and outcome, or a person's missed calls.
    Records {
        #[command(flatten)]
        admin: AdminArgs,
        /// Calls this person took part in (with --missed: the calls they missed).
        #[arg(long)]
        user: Option<String>,
        /// Calls for this team.
        #[arg(long)]
        team: Option<String>,
        /// From (RFC 3339, Unix seconds, YYYY-MM-DD or HH:MM today). Default: a day ago.
        #[arg(long)]
        from: Option<String>,
        /// Until (as --from). Default: now.
        #[arg(long)]
        to: Option<String>,
        /// answered, missed, busy, voicemail, rejected or cancelled.
        #[arg(long)]
        outcome: Option<String>,
        /// Only the calls --user missed (direct calls; with --teams, team calls too).
        #[arg(long, requires = "user")]
        missed: bool,
        /// With --missed: team calls that rang the person count too.
        #[arg(long, requires = "missed")]
        teams: bool,
        /// Most records printed (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Go on after this record (the key printed at the end of a full page).
        #[arg(long)]
        after: Option<String>,
        /// Print CSV (a header line, one line per call) instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// A person's or a team's voicemail through the running daemon's API: list, fetch, mark
    /// heard and delete messages; upload, fetch or remove the greeting and the recorded
    /// name.
    Voicemail {
        /// Configuration file (to find the API's address, and the admin token when no
        /// --token is given).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// The API's address (default: the config's api.listen).
        #[arg(long, global = true)]
        api: Option<std::net::SocketAddr>,
        /// Bearer token: a person's api_token (their own mailbox and their teams'), or the
        /// admin token (default: the config's api.admin_token).
        #[arg(long, global = true, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The mailbox is a team's: USER names a team.
        #[arg(long, global = true)]
        team: bool,
        #[command(subcommand)]
        action: VoicemailAction,
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
        /// A person with no registered device (repeatable; others with a SIP account have
        /// one, those without have none).
        #[arg(long)]
        offline: Vec<String>,
        /// Who answered the previous call to a group, e.g. support=bob (repeatable).
        #[arg(long)]
        last_answerer: Vec<String>,
    },
}

/// The formats an end time (`--until`) takes.
const UNTIL_HELP: &str = "End time: HH:MM (the machine's local time: today, or tomorrow when \
     already past), YYYY-MM-DD (local midnight), RFC 3339 or Unix seconds";

#[derive(Subcommand)]
enum PresenceAction {
    /// Everyone's status, profile, message and call status.
    List,
    /// Set a person's status (available, away, busy, dnd, custom, unavailable, on_break,
    /// after_call_work); a custom status takes its text from --message. With --until or
    /// --for the status lapses by itself then, and the one before returns.
    Set {
        user: String,
        status: String,
        #[arg(long)]
        message: Option<String>,
        #[arg(long, conflicts_with = "for_", help = UNTIL_HELP)]
        until: Option<String>,
        /// Length: 45m, 1h30m.
        #[arg(long = "for")]
        for_: Option<String>,
    },
    /// Set (or with --clear, clear) the temporary message of the current activation; the
    /// status, its end time and the profile stay.
    Message {
        user: String,
        /// The message ("" clears it too).
        #[arg(required_unless_present = "clear")]
        message: Option<String>,
        /// Clear the message.
        #[arg(long, conflicts_with = "message")]
        clear: bool,
    },
    /// Activate a profile (id or number) until a time, for a length, for its standard
    /// length (without --until and --for), or with no end (--for none).
    Profile {
        user: String,
        profile: String,
        #[arg(long, conflicts_with = "for_", help = UNTIL_HELP)]
        until: Option<String>,
        /// Length: 45m, 1h30m; none: no end time, not even the profile's standard length.
        #[arg(long = "for")]
        for_: Option<String>,
        /// A temporary status message for this activation.
        #[arg(long)]
        message: Option<String>,
    },
    /// See and manage a person's profiles, numbers first ("display profile numbers").
    Profiles {
        #[command(subcommand)]
        action: ProfilesAction,
    },
    /// Time in each status over a range, for a person or a team (per member, and the
    /// average).
    Report {
        #[arg(long, conflicts_with = "team", required_unless_present = "team")]
        user: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// Start: YYYY-MM-DD (local midnight), HH:MM (today, local time), RFC 3339 or Unix
        /// seconds.
        #[arg(long)]
        from: String,
        /// End (default: now), as --from.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand)]
enum VoicemailAction {
    /// The mailbox's counts and messages, newest first (each with its id).
    List {
        /// Whose mailbox: a user id (with --team, a team id).
        user: String,
    },
    /// Save a message's audio (a WAV file, 8000 Hz mono 16-bit PCM).
    Fetch {
        /// Whose mailbox: a user id (with --team, a team id).
        user: String,
        /// The message's id (see list).
        msg: String,
        /// Where to write it.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Mark a message heard (with --new: new again).
    Heard {
        /// Whose mailbox: a user id (with --team, a team id).
        user: String,
        /// The message's id (see list).
        msg: String,
        /// Mark it new again instead.
        #[arg(long)]
        new: bool,
    },
    /// Delete a message.
    Delete {
        /// Whose mailbox: a user id (with --team, a team id).
        user: String,
        /// The message's id (see list).
        msg: String,
    },
    /// Upload the greeting callers hear before leaving a message (a WAV file, 8000 Hz mono
    /// 16-bit PCM, at most 60 s), or with --remove remove it, or with --output save it.
    Greeting {
        /// Whose mailbox: a user id (with --team, a team id).
        user: String,
        #[command(flatten)]
        recording: RecordingArgs,
    },
    /// Upload the recording of the owner's name (a WAV file as the greeting's, at most
    /// 5 s), or with --remove remove it, or with --output save it.
    Name {
        /// Whose mailbox: a user id (with --team, a team id).
        user: String,
        #[command(flatten)]
        recording: RecordingArgs,
    },
}

/// What to do with a recording: upload FILE, remove it or save it.
#[derive(clap::Args)]
struct RecordingArgs {
    /// The WAV file to upload (convert others with: sox IN -r 8000 -c 1 -b 16 -e
    /// signed-integer OUT.wav).
    #[arg(required_unless_present_any = ["remove", "output"])]
    file: Option<PathBuf>,
    /// Remove the recording.
    #[arg(long, conflicts_with_all = ["file", "output"])]
    remove: bool,
    /// Save the recording to this file.
    #[arg(long, short, conflicts_with = "file")]
    output: Option<PathBuf>,
}

/// Most bytes of a recording read from a file (the API takes less; it says how much).
const MAX_UPLOAD: u64 = 4 * 1024 * 1024;

/// Reads a file to upload, at most [`MAX_UPLOAD`] bytes.
fn read_upload(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_UPLOAD + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_UPLOAD {
        return Err(format!(
            "{}: larger than {MAX_UPLOAD} bytes, more than any recording takes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Writes fetched audio to `path`; says what was saved.
fn save(path: &std::path::Path, what: &str, bytes: &[u8]) -> Result<String, String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!(
        "{what} saved to {} ({} bytes)",
        path.display(),
        bytes.len()
    ))
}

fn voicemail(c: &client::Client, team: bool, action: VoicemailAction) -> Result<String, String> {
    use client::escape as esc;
    use serde_json::json;
    let message =
        |user: &str, msg: &str| format!("{}/{}", client::mailbox_path(user, team), esc(msg));
    match action {
        VoicemailAction::List { user } => c
            .call("GET", &client::mailbox_path(&user, team), None)
            .map(|v| client::format_voicemail(&v)),
        VoicemailAction::Fetch { user, msg, output } => {
            let wav = c.fetch(&format!("{}/audio", message(&user, &msg)))?;
            save(&output, &format!("message {msg}"), &wav)
        }
        VoicemailAction::Heard { user, msg, new } => c
            .call(
                "PUT",
                &message(&user, &msg),
                Some(&json!({ "heard": !new })),
            )
            .map(|v| client::format_message(&v)),
        VoicemailAction::Delete { user, msg } => {
            c.call("DELETE", &message(&user, &msg), None).map(|v| {
                format!(
                    "deleted {}; {} new, {} heard left",
                    v["deleted"]["id"].as_str().unwrap_or(&msg),
                    v["counts"]["new"].as_u64().unwrap_or(0),
                    v["counts"]["old"].as_u64().unwrap_or(0)
                )
            })
        }
        VoicemailAction::Greeting { user, recording } => {
            record(c, &client::mailbox_path(&user, team), "greeting", recording)
        }
        VoicemailAction::Name { user, recording } => {
            record(c, &client::mailbox_path(&user, team), "name", recording)
        }
    }
}

/// Uploads, removes or saves recording `what` (`greeting`, `name`) of the mailbox at
/// `mailbox` (its API path).
fn record(
    c: &client::Client,
    mailbox: &str,
    what: &str,
    args: RecordingArgs,
) -> Result<String, String> {
    let path = format!("{mailbox}/{what}");
    if args.remove {
        return c
            .call("DELETE", &path, None)
            .map(|_| format!("{what} removed"));
    }
    if let Some(output) = args.output {
        return save(&output, what, &c.fetch(&path)?);
    }
    let file = args
        .file
        .ok_or("a WAV file, --remove or --output is needed")?;
    let wav = read_upload(&file)?;
    c.send_bytes("PUT", &path, "audio/wav", &wav).map(|v| {
        let ms = v["duration_ms"].as_u64().unwrap_or(0);
        format!("{what} kept ({}.{} s)", ms / 1000, ms % 1000 / 100)
    })
}

#[derive(Subcommand)]
enum ProfilesAction {
    /// A person's profiles; without a person, the policy's (everyone's base set).
    List { user: Option<String> },
    /// Create a profile of a person's own (numbered from 11 unless --number is given).
    Create {
        user: String,
        name: String,
        /// Its id (default: made from the name).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        settings: ProfileOptions,
    },
    /// Change a profile (id or number) of a person's set; what is not given stays.
    Update {
        user: String,
        profile: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: ProfileOptions,
    },
    /// Rename a profile (id or number) of a person's set.
    Rename {
        user: String,
        profile: String,
        name: String,
    },
    /// Remove a profile (id or number) from a person's set; whoever has it active
    /// returns to the default profile.
    Remove { user: String, profile: String },
}

#[derive(clap::Args)]
struct ProfileOptions {
    /// Its number (11 to 999; 1-10 are the default profiles').
    #[arg(long)]
    number: Option<i64>,
    /// The status it sets: available, away, busy, dnd, ...
    #[arg(long)]
    availability: Option<String>,
    /// Its status message ("" for none).
    #[arg(long)]
    message: Option<String>,
    /// Whether colleagues see free / ringing / busy while it is active.
    #[arg(long)]
    shows_call_status: Option<bool>,
    /// Outbound caller ID while it is active ("" for none).
    #[arg(long)]
    caller_id: Option<String>,
    /// Incoming calls: ring, ring_devices, out_of_hours, reject or send_to:DESTINATION.
    #[arg(long)]
    incoming: Option<String>,
    /// The devices that ring with ring_devices (comma-separated).
    #[arg(long, value_delimiter = ',')]
    devices: Option<Vec<String>>,
    /// The SIP code a rejecting profile answers with (400-699; default 480).
    #[arg(long)]
    reject_code: Option<i64>,
    /// The reason phrase of a rejecting profile.
    #[arg(long)]
    reject_reason: Option<String>,
    /// How long an activation lasts without an end time: 45m, 2h, or none.
    #[arg(long)]
    standard_length: Option<String>,
}

impl ProfileOptions {
    /// The API body of these settings.
    fn body(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let mut b = serde_json::Map::new();
        let mut put = |k: &str, v: Option<serde_json::Value>| {
            if let Some(v) = v {
                b.insert(k.into(), v);
            }
        };
        put("number", self.number.map(|n| json!(n)));
        put("availability", self.availability.as_ref().map(|v| json!(v)));
        put("message", self.message.as_ref().map(|v| json!(v)));
        put(
            "shows_call_status",
            self.shows_call_status.map(|v| json!(v)),
        );
        put("caller_id", self.caller_id.as_ref().map(|v| json!(v)));
        put("incoming", self.incoming.as_ref().map(|v| json!(v)));
        put("devices", self.devices.as_ref().map(|v| json!(v)));
        put("reject_code", self.reject_code.map(|v| json!(v)));
        put(
            "reject_reason",
            self.reject_reason.as_ref().map(|v| json!(v)),
        );
        put(
            "standard_length",
            self.standard_length.as_ref().map(|v| json!(v)),
        );
        b
    }
}

fn profile_lines(v: &serde_json::Value) -> String {
    let mut lines = vec![format!(
        "{:>3}  {:<22} {:<20} {:<16} {:<28} {:<8}",
        "no.", "name", "id", "availability", "incoming calls", "length"
    )];
    lines.extend(
        v["profiles"]
            .as_array()
            .into_iter()
            .flatten()
            .map(client::format_profile),
    );
    lines.join("\n")
}

fn profiles(c: &client::Client, action: ProfilesAction) -> Result<String, String> {
    use client::escape as esc;
    use serde_json::{json, Value};
    let path = |user: &str| format!("/v1/presence/{}/profiles", esc(user));
    match action {
        ProfilesAction::List { user: None } => c
            .call("GET", "/v1/profiles", None)
            .map(|v| profile_lines(&v)),
        ProfilesAction::List { user: Some(u) } => {
            c.call("GET", &path(&u), None).map(|v| profile_lines(&v))
        }
        ProfilesAction::Create {
            user,
            name,
            id,
            settings,
        } => {
            let mut b = settings.body();
            b.insert("name".into(), json!(name));
            if let Some(id) = id {
                b.insert("id".into(), json!(id));
            }
            c.call("POST", &path(&user), Some(&Value::Object(b)))
                .map(|v| client::format_profile(&v))
        }
        ProfilesAction::Update {
            user,
            profile,
            name,
            settings,
        } => {
            let mut b = settings.body();
            if let Some(n) = name {
                b.insert("name".into(), json!(n));
            }
            let p = format!("{}/{}", path(&user), esc(&profile));
            c.call("PATCH", &p, Some(&Value::Object(b)))
                .map(|v| client::format_profile(&v))
        }
        ProfilesAction::Rename {
            user,
            profile,
            name,
        } => {
            let p = format!("{}/{}", path(&user), esc(&profile));
            c.call("PATCH", &p, Some(&json!({ "name": name })))
                .map(|v| client::format_profile(&v))
        }
        ProfilesAction::Remove { user, profile } => {
            let p = format!("{}/{}", path(&user), esc(&profile));
            c.call("DELETE", &p, None).map(|v| {
                format!(
                    "removed: {}\n{}",
                    client::format_profile(&v["removed"]),
                    client::format_person(&v["presence"])
                )
            })
        }
    }
}

/// A client of the API as the admin: the address and token given, else the config's.
fn admin_client(
    config: Option<&PathBuf>,
    api: Option<std::net::SocketAddr>,
    token: Option<String>,
) -> Result<client::Client, String> {
    let loaded = match (&api, &token) {
        (Some(_), Some(_)) => None,
        _ => Some(load_config(config).map_err(|e| e.to_string())?),
    };
    let addr = api
        .or_else(|| loaded.as_ref().and_then(|c| c.api_listen))
        .ok_or("error: the configuration turns the API off")?;
    let token = token.or_else(|| loaded.and_then(|c| c.admin_token)).ok_or(
        "error: the admin token is needed: --token T, SWITCHBOARD_TOKEN, or \
             api.admin_token in the config",
    )?;
    Ok(client::Client { addr, token })
}

/// One call to the API as its admin; its answer printed by `format`.
fn admin_call(
    admin: AdminArgs,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    format: fn(&serde_json::Value) -> String,
) -> ExitCode {
    let c = match admin_client(admin.config.as_ref(), admin.api, admin.token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match c.call(method, path, body) {
        Ok(v) => {
            println!("{}", format(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
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
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            switchboard::logging::init(config.log_format);
            // One thread for the SIP core and its sockets: cheaper per message than handing
            // each one between threads (docs/architecture.md, "Threads").
            let rt = match tokio::runtime::Builder::new_current_thread()
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
            let Some(token) = token else {
                eprintln!("error: a token is needed: --token T, or SWITCHBOARD_TOKEN");
                return ExitCode::FAILURE;
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
                    until,
                    for_,
                } => c
                    .call(
                        "PUT",
                        &format!("/v1/presence/{}/status", client::escape(&user)),
                        Some(&client::status_body(
                            &status,
                            message.as_deref(),
                            until.as_deref(),
                            for_.as_deref(),
                        )),
                    )
                    .map(|v| client::format_person(&v)),
                PresenceAction::Message {
                    user,
                    message,
                    clear: _,
                } => c
                    .call(
                        "PUT",
                        &format!("/v1/presence/{}/message", client::escape(&user)),
                        Some(&serde_json::json!({ "message": message })),
                    )
                    .map(|v| client::format_person(&v)),
                PresenceAction::Profiles { action } => profiles(&c, action),
                PresenceAction::Report {
                    user,
                    team,
                    from,
                    to,
                } => {
                    let esc = client::escape;
                    let mut q = match (user, team) {
                        (Some(u), _) => format!("user={}", esc(&u)),
                        (_, Some(t)) => format!("team={}", esc(&t)),
                        (None, None) => String::new(),
                    };
                    q.push_str(&format!("&from={}", esc(&client::cli_report_time(&from))));
                    if let Some(t) = to {
                        q.push_str(&format!("&to={}", esc(&client::cli_report_time(&t))));
                    }
                    c.call("GET", &format!("/v1/reports/time-in-status?{q}"), None)
                        .map(|v| client::format_report(&v))
                }
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
                .and_then(|b| {
                    let path = format!("/v1/presence/{}/profile", client::escape(&user));
                    c.call("PUT", &path, Some(&b))
                })
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
        Command::Voicemail {
            config,
            api,
            token,
            team,
            action,
        } => {
            let c = match admin_client(config.as_ref(), api, token) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match voicemail(&c, team, action) {
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
        Command::Calls { admin } => {
            admin_call(admin, "GET", "/v1/calls", None, client::format_calls)
        }
        Command::Records {
            admin,
            user,
            team,
            from,
            to,
            outcome,
            missed,
            teams,
            limit,
            after,
            csv,
        } => {
            let esc = |v: &str| client::query_value(v);
            let mut q = format!("limit={limit}");
            for (key, value) in [
                ("user", user),
                ("team", team),
                ("outcome", outcome),
                ("after", after),
                ("from", from.map(|f| client::cli_report_time(&f))),
                ("to", to.map(|t| client::cli_report_time(&t))),
            ] {
                if let Some(v) = value {
                    q.push_str(&format!("&{key}={}", esc(&v)));
                }
            }
            let path = if missed {
                format!("/v1/records/missed?{q}&teams={teams}")
            } else {
                format!("/v1/records?{q}")
            };
            let format = if csv {
                client::format_records_csv
            } else {
                client::format_records
            };
            admin_call(admin, "GET", &path, None, format)
        }
        Command::Trunks { admin } => {
            admin_call(admin, "GET", "/v1/trunks", None, client::format_trunks)
        }
        Command::Registrations { admin, user } => {
            let path = match user {
                Some(u) => format!("/v1/registrations?user={}", client::query_value(&u)),
                None => "/v1/registrations".into(),
            };
            admin_call(admin, "GET", &path, None, client::format_registrations)
        }
        Command::Reload {
            admin,
            allow_shrink,
        } => {
            let body = serde_json::json!({ "allow_shrink": allow_shrink });
            admin_call(
                admin,
                "POST",
                "/v1/policy/reload",
                Some(&body),
                client::format_reload,
            )
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
                Ok(policy) => {
                    for w in policy.warnings() {
                        eprintln!("{w}");
                    }
                    let warned = match policy.warnings().len() {
                        0 => String::new(),
                        1 => " (1 warning)".into(),
                        n => format!(" ({n} warnings)"),
                    };
                    println!(
                        "{}: configuration and policy are valid{warned}",
                        config.source
                    );
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
