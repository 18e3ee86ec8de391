//! Confirmed forwarding (`[users.ID.forwarding] require_confirmation`): a forward target
//! that answers is asked to accept the call before the caller is connected.
//!
//! This module holds the confirmation itself as a sans-I/O state machine: what the target
//! hears ([`prompt`]: "you have a call from ⟨the caller's number, digit by digit⟩, press 1
//! to accept the call") and how its keys are judged ([`ConfirmRun`]: `1` accepts; any
//! other key declines; silence hears the question once more, then declines). The policy
//! marks the forward targets' legs ([`switchboard_policy::Leg::confirm`]), the executor
//! hands the mark on ([`crate::executor::BranchStart::confirm`]); the back-to-back leg
//! that puts the question to the target is `core::calls::confirm_b2b` (its dialog with the
//! target: [`super::confirm_leg`]).

use super::menu::{MenuRun, Turn};
use std::time::{Duration, Instant};
use switchboard_media::say::{phrase, Language, PromptName};
use switchboard_media::session::Clip;

/// How long the target has to press a key once the question has been said.
pub(crate) const CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// Times the question is said again when no key comes.
pub(crate) const CONFIRM_REPEATS: u32 = 1;

/// The prompts the target hears: "you have a call from ⟨caller⟩, press 1 to accept the
/// call". The caller is said digit by digit; a caller that cannot be said that way (no
/// number, letters, too long) is left out with its "from".
pub(crate) fn prompt(language: &dyn Language, caller: Option<&str>) -> Vec<PromptName> {
    let mut said = vec![phrase::YOU_HAVE_A_CALL];
    if let Some(number) = caller.filter(|n| !n.is_empty()) {
        let mut digits = vec![phrase::FROM];
        if language.say_digits(number, &mut digits).is_ok() {
            said.extend(digits);
        }
    }
    said.push(phrase::PRESS);
    // "1" is always sayable.
    let _ = language.say_digits("1", &mut said);
    said.push(phrase::TO_ACCEPT_THE_CALL);
    said
}

/// What the target's answer amounts to (see [`ConfirmRun`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Play these clips (after stopping what plays, when `stop`).
    Play { stop: bool, clips: Vec<Clip> },
    /// The target pressed 1: connect the caller.
    Accepted,
    /// The target declined (another key) or said nothing: the leg counts as not
    /// answered; how, for the call's history.
    Declined(String),
    /// Nothing to do.
    Nothing,
}

/// The question put to one target that answered: a menu with one option, `1`, where any
/// other key is a refusal rather than a mistake.
#[derive(Clone, Debug)]
pub(crate) struct ConfirmRun {
    menu: MenuRun,
    /// The question has begun: keys count from now on.
    begun: bool,
}

impl ConfirmRun {
    /// The question said by `clips` (see [`prompt`]), waited on for `wait`, said again
    /// `repeats` times when no key comes.
    pub(crate) fn new(clips: Vec<Clip>, wait: Duration, repeats: u32) -> Self {
        ConfirmRun {
            menu: MenuRun::new(
                "confirmation".into(),
                vec!['1'],
                clips,
                Vec::new(),
                wait,
                repeats,
            ),
            begun: false,
        }
    }

    /// The target's session is open (it answered): the clips to play first.
    pub(crate) fn begin(&mut self, now: Instant) -> Vec<Clip> {
        self.begun = true;
        self.menu.begin(now)
    }

    /// What was playing has been played: the wait for a key begins.
    pub(crate) fn played(&mut self, now: Instant) {
        self.menu.played(now)
    }

    /// The target pressed `key` (while the question plays or after it).
    pub(crate) fn digit(&mut self, key: char, now: Instant) -> Verdict {
        if !self.begun {
            return Verdict::Nothing;
        }
        if key != '1' {
            return Verdict::Declined(format!("key {key}"));
        }
        match self.menu.digit(key, now) {
            Turn::Chosen(_) => Verdict::Accepted,
            other => self.verdict(other),
        }
    }

    /// When [`ConfirmRun::timeout`] is due (the wait for a key), if at all.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.menu.deadline()
    }

    /// Time passed: the question again, or the end without a key.
    pub(crate) fn timeout(&mut self, now: Instant) -> Verdict {
        let turn = self.menu.timeout(now);
        self.verdict(turn)
    }

    fn verdict(&self, turn: Turn) -> Verdict {
        match turn {
            Turn::Play { stop, clips } => Verdict::Play { stop, clips },
            Turn::Chosen(_) => Verdict::Accepted,
            Turn::GiveUp(_) => Verdict::Declined("no key".into()),
            Turn::Nothing => Verdict::Nothing,
        }
    }
}

#[cfg(test)]
#[path = "confirm_tests.rs"]
mod tests;
