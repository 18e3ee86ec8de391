//! Where the routing policy comes from: the configured file or directory, or the example
//! policy compiled into the binary; and what makes a reload safe: the files are read only
//! once they have stopped changing ([`read_settled`]), what a reload changes is worked out
//! ([`Changes`]), and a reload that would remove most people needs the operator's
//! confirmation ([`ReloadRules::shrink_refusal`]).

use crate::config::{Config, ReloadRules};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use switchboard_policy::{
    read_sources, source_files, Context, Diagnostics, DigestAlgorithm, Policy, Source,
};
use switchboard_sip::auth::Algorithm;

/// The example policy compiled into the binary, used when the config names none.
pub const EMBEDDED_POLICY: &str = include_str!("../../../config/policy.toml");
pub const EMBEDDED_POLICY_NAME: &str = "<embedded config/policy.toml>";

/// Loads and validates the policy the configuration points at, also against the
/// configuration: credentials must allow one of the algorithms the challenges offer.
pub fn load(config: &Config) -> Result<Policy, Diagnostics> {
    match &config.policy_path {
        Some(path) => load_sources(config, &read_sources(path)?),
        None => load_sources(
            config,
            &[Source {
                name: EMBEDDED_POLICY_NAME.into(),
                text: EMBEDDED_POLICY.into(),
            }],
        ),
    }
}

/// One log line for each of the policy's warnings (valid, and perhaps not what was meant),
/// as `switchboard check` shows them.
pub fn log_warnings(policy: &Policy) {
    for w in policy.warnings() {
        tracing::warn!(
            file = %w.file,
            line = w.line,
            key = %w.key,
            "policy warning: {}",
            w.message
        );
    }
}

/// Validates policy texts already read, also against the configuration.
pub fn load_sources(config: &Config, sources: &[Source]) -> Result<Policy, Diagnostics> {
    let context = Context {
        offered_algorithms: Some(
            config
                .auth_algorithms
                .iter()
                .map(|a| match a {
                    Algorithm::Md5 => DigestAlgorithm::Md5,
                    Algorithm::Sha256 => DigestAlgorithm::Sha256,
                })
                .collect(),
        ),
        prompts: prompt_names(config),
    };
    Policy::from_sources_in(sources, &context)
}

/// The names of the prompts the daemon plays (messages must name one of them), when it has
/// media; None without (a message is then skipped whatever its name) or when the prompts
/// cannot be loaded (the daemon's start says why).
fn prompt_names(config: &Config) -> Option<std::collections::BTreeSet<String>> {
    if !config.media.enabled {
        return None;
    }
    let prompts =
        crate::voice::load_prompts(&config.media.language, config.media.prompts.as_deref()).ok()?;
    Some(prompts.iter().map(|(name, _)| name.to_string()).collect())
}

/// What identifies the policy files' current contents cheaply: each file's path, length and
/// modification time. Editors that save by writing a new file and renaming it change it too.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The fingerprint of the configured policy (None for the embedded one).
pub fn fingerprint(config: &Config) -> Option<Fingerprint> {
    let path = config.policy_path.as_ref()?;
    Some(
        source_files(path)
            .unwrap_or_default()
            .into_iter()
            .map(|f| {
                let m = std::fs::metadata(&f).ok();
                let len = m.as_ref().map(|m| m.len()).unwrap_or(0);
                let modified = m.and_then(|m| m.modified().ok());
                (f, len, modified)
            })
            .collect(),
    )
}

impl ReloadRules {
    /// The longest a reload waits for the files to stop changing: ten quiet periods, and at
    /// least 5 s.
    pub fn settle_limit(&self) -> Duration {
        (self.quiet * 10).max(Duration::from_secs(5))
    }

    /// Why replacing a policy of `old_users` users with one of `new_users` needs the
    /// operator's confirmation, if it does: the new policy has no users at all (an empty or
    /// truncated file) while the running one has some, or it removes more than
    /// `shrink_percent` % of the users and at least `shrink_min_users` of them.
    pub fn shrink_refusal(
        &self,
        old_users: usize,
        new_users: usize,
        changes: &Changes,
    ) -> Option<String> {
        let removed = changes.users_removed.len();
        if removed == 0 {
            return None;
        }
        let names = Names(&changes.users_removed);
        if new_users == 0 {
            return Some(format!(
                "the new policy has no users: it would remove all {removed} ({names})"
            ));
        }
        let share = removed as u64 * 100 > u64::from(self.shrink_percent) * old_users as u64;
        (share && removed >= self.shrink_min_users).then(|| {
            format!(
                "it would remove {removed} of the {old_users} users ({names}): more than {} % \
                 (policy.reload.shrink_percent) and at least {} (policy.reload.shrink_min_users)",
                self.shrink_percent, self.shrink_min_users
            )
        })
    }
}

/// What a reload changes: users, teams and trunks added, removed and changed (ids, in
/// order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub users_added: Vec<String>,
    pub users_removed: Vec<String>,
    pub users_changed: Vec<String>,
    pub teams_added: Vec<String>,
    pub teams_removed: Vec<String>,
    pub teams_changed: Vec<String>,
    pub trunks_added: Vec<String>,
    pub trunks_removed: Vec<String>,
    pub trunks_changed: Vec<String>,
}

/// Ids added, removed and changed between two maps of id → item.
fn compare<T: PartialEq>(
    old: BTreeMap<&str, &T>,
    new: BTreeMap<&str, &T>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let ids = |it: &mut dyn Iterator<Item = &&str>| it.map(|k| k.to_string()).collect();
    let added = ids(&mut new.keys().filter(|k| !old.contains_key(*k)));
    let removed = ids(&mut old.keys().filter(|k| !new.contains_key(*k)));
    let changed = ids(&mut new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k));
    (added, removed, changed)
}

impl Changes {
    pub fn between(old: &Policy, new: &Policy) -> Changes {
        let (users_added, users_removed, users_changed) = compare(
            old.users().map(|u| (u.id.as_str(), u)).collect(),
            new.users().map(|u| (u.id.as_str(), u)).collect(),
        );
        let (teams_added, teams_removed, teams_changed) = compare(
            old.teams().map(|t| (t.id.as_str(), t)).collect(),
            new.teams().map(|t| (t.id.as_str(), t)).collect(),
        );
        let (trunks_added, trunks_removed, trunks_changed) = compare(
            old.trunks().map(|t| (t.id.as_str(), t)).collect(),
            new.trunks().map(|t| (t.id.as_str(), t)).collect(),
        );
        Changes {
            users_added,
            users_removed,
            users_changed,
            teams_added,
            teams_removed,
            teams_changed,
            trunks_added,
            trunks_removed,
            trunks_changed,
        }
    }
}

/// One line for the log: `users_added=[zed] users_removed=[] users_changed=[bob, carol]
/// teams_added=[] … trunks_added=[] …`, each list cut after a few names (`… +N more`).
impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, list)) in [
            ("users_added", &self.users_added),
            ("users_removed", &self.users_removed),
            ("users_changed", &self.users_changed),
            ("teams_added", &self.teams_added),
            ("teams_removed", &self.teams_removed),
            ("teams_changed", &self.teams_changed),
            ("trunks_added", &self.trunks_added),
            ("trunks_removed", &self.trunks_removed),
            ("trunks_changed", &self.trunks_changed),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}=[{}]", Names(list))?;
        }
        Ok(())
    }
}

/// Most names a log line lists of one kind.
const NAMES_SHOWN: usize = 10;

/// A list of ids for a log line: at most [`NAMES_SHOWN`], then how many more; control
/// characters escaped.
struct Names<'a>(&'a [String]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().take(NAMES_SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            for c in name.chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
        }
        if self.0.len() > NAMES_SHOWN {
            write!(f, ", … +{} more", self.0.len() - NAMES_SHOWN)?;
        }
        Ok(())
    }
}

/// How a wait for the policy files to stop changing ended.
#[derive(Debug)]
pub enum Settled {
    /// What the files held once they had not changed for the quiet period, and their
    /// fingerprint from before that reading.
    Stable {
        read: Result<Vec<Source>, Diagnostics>,
        fingerprint: Option<Fingerprint>,
    },
    /// They were still changing when the wait's bound ran out.
    StillChanging,
}

/// Reads the configured policy files until two readings a quiet period apart (and every one
/// between) agree, byte for byte, so a file being written — in one go or in several steps
/// with pauses shorter than the quiet period — is never taken half-way. A file replaced by
/// rename is simply read anew. Gives up after `limit`. The embedded policy is stable at once.
pub fn read_settled(config: &Config, quiet: Duration, limit: Duration) -> Settled {
    let Some(path) = &config.policy_path else {
        return Settled::Stable {
            read: Ok(vec![Source {
                name: EMBEDDED_POLICY_NAME.into(),
                text: EMBEDDED_POLICY.into(),
            }]),
            fingerprint: None,
        };
    };
    let step = (quiet / 4).clamp(Duration::from_millis(10), Duration::from_millis(100));
    let started = Instant::now();
    let take = || (fingerprint(config), read_sources(path));
    let same =
        |a: &Result<Vec<Source>, Diagnostics>, b: &Result<Vec<Source>, Diagnostics>| match (a, b) {
            (Ok(a), Ok(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.name == y.name && x.text == y.text)
            }
            (Err(a), Err(b)) => a == b,
            _ => false,
        };
    let (mut fp, mut read) = take();
    let mut since = Instant::now();
    loop {
        if since.elapsed() >= quiet {
            return Settled::Stable {
                read,
                fingerprint: fp,
            };
        }
        if started.elapsed() >= limit {
            return Settled::StillChanging;
        }
        std::thread::sleep(step);
        let (f, r) = take();
        if !same(&r, &read) {
            (fp, read) = (f, r);
            since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(users: &[&str]) -> Policy {
        let text: String = users
            .iter()
            .enumerate()
            .map(|(i, u)| format!("[users.{u}]\nextension = \"{}\"\n", 100 + i))
            .collect();
        Policy::from_sources(&[Source {
            name: "p.toml".into(),
            text,
        }])
        .unwrap()
    }

    fn rules() -> ReloadRules {
        ReloadRules {
            quiet: Duration::from_millis(300),
            shrink_percent: 50,
            shrink_min_users: 3,
        }
    }

    #[test]
    fn changes_name_users_teams_and_trunks_added_removed_and_changed() {
        let with = |text: &str| {
            Policy::from_sources(&[Source {
                name: "p.toml".into(),
                text: text.into(),
            }])
            .unwrap()
        };
        let old = with(
            "[users.alice]\nextension = \"100\"\n[users.bob]\nextension = \"101\"\n\
             [users.carol]\nextension = \"102\"\n\
             [teams.sales]\nextension = \"200\"\nmembers = [\"alice\"]\n\
             [teams.desk]\nextension = \"201\"\nmembers = [\"bob\"]\n",
        );
        let new = with(
            "[users.alice]\nextension = \"100\"\n[users.bob]\nextension = \"199\"\n\
             [users.dave]\nextension = \"103\"\n\
             [teams.sales]\nextension = \"200\"\nmembers = [\"alice\", \"dave\"]\n\
             [teams.help]\nextension = \"202\"\nmembers = [\"bob\"]\n",
        );
        let c = Changes::between(&old, &new);
        assert_eq!(c.users_added, ["dave"]);
        assert_eq!(c.users_removed, ["carol"]);
        assert_eq!(c.users_changed, ["bob"]);
        assert_eq!(
            c.to_string(),
            "users_added=[dave] users_removed=[carol] users_changed=[bob] \
             teams_added=[help] teams_removed=[desk] teams_changed=[sales] \
             trunks_added=[] trunks_removed=[] trunks_changed=[]"
        );
        assert_eq!(Changes::between(&old, &old), Changes::default());
    }

    #[test]
    fn long_lists_are_cut_and_control_characters_escaped() {
        let many: Vec<String> = (0..13).map(|i| format!("u{i}")).collect();
        assert_eq!(
            Names(&many).to_string(),
            "u0, u1, u2, u3, u4, u5, u6, u7, u8, u9, … +3 more"
        );
        assert_eq!(Names(&["a\u{1b}[31m".into()]).to_string(), "a\\u{1b}[31m");
    }

    #[test]
    fn an_empty_policy_or_most_users_removed_needs_confirmation() {
        let r = rules();
        let two = policy(&["alice", "bob"]);
        let none = policy(&[]);
        // Empty: refused whatever the numbers.
        let why = r
            .shrink_refusal(2, 0, &Changes::between(&two, &none))
            .unwrap();
        assert!(why.contains("no users"), "{why}");
        assert!(why.contains("alice, bob"), "{why}");
        // Nothing before, nothing after: nothing removed.
        assert_eq!(
            r.shrink_refusal(0, 0, &Changes::between(&none, &none)),
            None
        );
        let eight = policy(&["a", "b", "c", "d", "e", "f", "g", "h"]);
        // 4 of 8 is not more than half.
        let half = policy(&["a", "b", "c", "d"]);
        assert_eq!(
            r.shrink_refusal(8, 4, &Changes::between(&eight, &half)),
            None
        );
        // 5 of 8 is.
        let three = policy(&["a", "b", "c"]);
        let why = r
            .shrink_refusal(8, 3, &Changes::between(&eight, &three))
            .unwrap();
        assert!(
            why.contains("remove 5 of the 8 users (d, e, f, g, h)"),
            "{why}"
        );
        // 2 of 3 is more than half, but fewer than shrink_min_users.
        let abc = policy(&["a", "b", "c"]);
        let a = policy(&["a"]);
        assert_eq!(r.shrink_refusal(3, 1, &Changes::between(&abc, &a)), None);
        // 100 %: only an empty policy is refused.
        let all = ReloadRules {
            shrink_percent: 100,
            ..rules()
        };
        assert_eq!(
            all.shrink_refusal(8, 1, &Changes::between(&eight, &policy(&["a"]))),
            None
        );
    }

    #[test]
    fn a_file_is_read_once_it_stops_changing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[users.a]\n").unwrap();
        let mut config = crate::config::Config::embedded().unwrap();
        config.policy_path = Some(path.clone());
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let mut f = std::fs::File::create(&path).unwrap();
                f.write_all(b"[users.a]\nextension = \"1\"\n").unwrap();
                std::thread::sleep(Duration::from_millis(150));
                f.write_all(b"[users.b]\nextension = \"2\"\n").unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let quiet = Duration::from_millis(300);
        match read_settled(&config, quiet, Duration::from_secs(5)) {
            Settled::Stable { read, fingerprint } => {
                let read = read.unwrap();
                assert!(read[0].text.ends_with("extension = \"2\"\n"), "{read:?}");
                assert!(fingerprint.is_some());
            }
            Settled::StillChanging => panic!("the file stopped changing"),
        }
        writer.join().unwrap();
        // A file that keeps changing is given up on at the limit.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0..200 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    std::fs::write(&path, format!("# {i}\n")).unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let r = read_settled(&config, quiet, Duration::from_millis(800));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(matches!(r, Settled::StillChanging), "{r:?}");
    }
}
