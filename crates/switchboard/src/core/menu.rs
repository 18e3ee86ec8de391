//! The daemon's own IVR menu, as a media session runs it (see
//! [`crate::executor::BranchTarget::Menu`]): the prompt plays, the caller presses a key, and
//! the menu says what that means — an option chosen, the prompt again (after the invalid-key
//! message), or the retries used up.
//!
//! A key pressed while the prompt plays stops it at once (barge-in) and counts. Keys come
//! from [`Event::Digit`](switchboard_media::session::Event::Digit), whatever carried them
//! (RFC 4733 through the engine, or a SIP INFO handed to the same path); this state machine
//! sees only the key and the time. It has one timer: the wait for a key once the prompt has
//! been played ([`MenuRun::deadline`]).
//!
//! A [`Command::Stop`](switchboard_media::session::Command::Stop) and the
//! [`Event::Played`](switchboard_media::session::Event::Played) of the prompt it stops can
//! cross (the prompt ended just as the key came): a `Played` that comes sooner than three
//! quarters of what is playing could take is the stopped prompt's, and is ignored.

use std::time::{Duration, Instant};
use switchboard_media::session::Clip;

/// Where a menu is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not started: the session is opening.
    Idle,
    /// The prompt (after the invalid-key message, perhaps) is playing; a `Played` before
    /// `not_before` belongs to a play stopped earlier.
    Playing { not_before: Instant },
    /// The prompt has been played: waiting for a key until then.
    Waiting { until: Instant },
}

/// What the session does next (see [`MenuRun::digit`], [`MenuRun::timeout`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Play these clips (after stopping what plays, when `stop`).
    Play { stop: bool, clips: Vec<Clip> },
    /// The caller chose this key's option: the menu is over.
    Chosen(char),
    /// The retries are used up: the menu is over without a choice (how, for the history).
    GiveUp(String),
    /// Nothing to do.
    Nothing,
}

/// One menu being served to one caller.
#[derive(Clone, Debug)]
pub(crate) struct MenuRun {
    /// The menu's id, for the log.
    pub id: String,
    /// The keys that have an option.
    keys: Vec<char>,
    prompt: Vec<Clip>,
    /// Played before the prompt again after a key with no option (may be empty).
    invalid: Vec<Clip>,
    timeout: Duration,
    retries: u32,
    /// Times the prompt has been played again.
    replays: u32,
    phase: Phase,
}

/// How long G.711 audio of `octets` bytes plays (8,000 a second).
fn duration_of(clips: &[Clip]) -> Duration {
    let octets: u64 = clips.iter().map(|c| c.len() as u64).sum();
    Duration::from_micros(octets.saturating_mul(125))
}

impl MenuRun {
    /// A menu whose options are `keys`, said by `prompt` (`invalid` before it again after a
    /// key with no option), waiting `timeout` for a key, the prompt played again at most
    /// `retries` times.
    pub fn new(
        id: String,
        keys: Vec<char>,
        prompt: Vec<Clip>,
        invalid: Vec<Clip>,
        timeout: Duration,
        retries: u32,
    ) -> Self {
        MenuRun {
            id,
            keys,
            prompt,
            invalid,
            timeout,
            retries,
            replays: 0,
            phase: Phase::Idle,
        }
    }

    /// The session is open: the clips to play first (the prompt).
    pub fn begin(&mut self, now: Instant) -> Vec<Clip> {
        let clips = self.prompt.clone();
        self.playing(&clips, now);
        clips
    }

    fn playing(&mut self, clips: &[Clip], now: Instant) {
        let not_before = now + duration_of(clips) * 3 / 4;
        self.phase = Phase::Playing { not_before };
    }

    /// What was playing has been played: the wait for a key begins (a `Played` of a
    /// play stopped earlier is ignored).
    pub fn played(&mut self, now: Instant) {
        if let Phase::Playing { not_before } = self.phase {
            if now >= not_before {
                self.phase = Phase::Waiting {
                    until: now + self.timeout,
                };
            }
        }
    }

    /// The caller pressed `key`.
    pub fn digit(&mut self, key: char, now: Instant) -> Turn {
        let stop = match self.phase {
            Phase::Idle => return Turn::Nothing,
            Phase::Playing { .. } => true,
            Phase::Waiting { .. } => false,
        };
        if self.keys.contains(&key) {
            return Turn::Chosen(key);
        }
        self.again(stop, true, format!("key {key} has no option"), now)
    }

    /// When the wait for a key ends, if the menu is waiting.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { until } => Some(until),
            _ => None,
        }
    }

    /// Time passed: after the wait for a key, the prompt again, or the end.
    pub fn timeout(&mut self, now: Instant) -> Turn {
        match self.phase {
            Phase::Waiting { until } if now >= until => {
                self.again(false, false, "no key".to_string(), now)
            }
            _ => Turn::Nothing,
        }
    }

    /// The prompt again (the invalid-key message first when `invalid`), or the end when
    /// the retries are used up.
    fn again(&mut self, stop: bool, invalid: bool, why: String, now: Instant) -> Turn {
        if self.replays >= self.retries {
            let prompts = self.replays + 1;
            let s = if prompts == 1 { "" } else { "s" };
            return Turn::GiveUp(format!("{why} after {prompts} prompt{s}"));
        }
        self.replays += 1;
        let mut clips = Vec::new();
        if invalid {
            clips.extend(self.invalid.iter().cloned());
        }
        clips.extend(self.prompt.iter().cloned());
        self.playing(&clips, now);
        Turn::Play { stop, clips }
    }
}

#[cfg(test)]
#[path = "menu_tests.rs"]
mod core_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(ms: usize) -> Clip {
        vec![0xFFu8; ms * 8].into()
    }

    fn menu(retries: u32) -> MenuRun {
        MenuRun::new(
            "main".into(),
            vec!['1', '2'],
            vec![clip(2000)],
            vec![clip(1000)],
            Duration::from_secs(5),
            retries,
        )
    }

    #[test]
    fn a_key_of_an_option_is_chosen_during_the_prompt_or_after_it() {
        let t0 = Instant::now();
        let mut m = menu(2);
        assert_eq!(m.digit('1', t0), Turn::Nothing, "not started");
        assert_eq!(m.begin(t0).len(), 1);
        assert_eq!(
            m.digit('2', t0 + Duration::from_millis(300)),
            Turn::Chosen('2')
        );
        let mut m = menu(2);
        m.begin(t0);
        m.played(t0 + Duration::from_secs(2));
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(7)));
        assert_eq!(m.digit('1', t0 + Duration::from_secs(3)), Turn::Chosen('1'));
    }

    #[test]
    fn a_key_with_no_option_stops_the_prompt_and_says_so_then_the_prompt_again() {
        let t0 = Instant::now();
        let mut m = menu(1);
        m.begin(t0);
        // Barge-in: the prompt is stopped, the invalid message and the prompt follow.
        let Turn::Play { stop, clips } = m.digit('9', t0 + Duration::from_millis(500)) else {
            panic!()
        };
        assert!(stop);
        assert_eq!(clips.len(), 2);
        assert_eq!(clips[0].len(), 8000, "the invalid message first");
        // The stopped prompt's Played crossing the Stop is not this play's.
        m.played(t0 + Duration::from_millis(510));
        assert_eq!(m.deadline(), None);
        // This play's (3 s of audio) starts the wait.
        m.played(t0 + Duration::from_millis(3500));
        assert!(m.deadline().is_some());
        // A second bad key with no retries left: the end.
        assert_eq!(
            m.digit('#', t0 + Duration::from_secs(4)),
            Turn::GiveUp("key # has no option after 2 prompts".into())
        );
    }

    #[test]
    fn no_key_plays_the_prompt_again_until_the_retries_are_used_up() {
        let t0 = Instant::now();
        let mut m = menu(2);
        let mut now = t0;
        m.begin(now);
        for _ in 0..2 {
            now += Duration::from_secs(2);
            m.played(now);
            assert_eq!(m.timeout(now + Duration::from_secs(4)), Turn::Nothing);
            now += Duration::from_secs(5);
            let Turn::Play { stop, clips } = m.timeout(now) else {
                panic!()
            };
            assert!(!stop);
            assert_eq!(clips.len(), 1, "the prompt alone after no key");
        }
        now += Duration::from_secs(2);
        m.played(now);
        now += Duration::from_secs(5);
        assert_eq!(
            m.timeout(now),
            Turn::GiveUp("no key after 3 prompts".into())
        );
    }
}
