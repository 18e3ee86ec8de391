//! Phrases built from prompts: numbers, digits, times and dates said as sequences of prompt
//! names, as Asterisk's SayNumber/SayUnixTime and FreeSWITCH's mod_say do. Pure functions,
//! no audio: the player looks each name up in the loaded [`Prompts`](crate::prompts::Prompts)
//! and plays them one after another.
//!
//! A prompt name is `category/name`, the file `prompts/<language>/category/name.wav`. The
//! names are the same in every language (`phrases/is_in_a_meeting` is that phrase in each
//! language's words); how a number or a time is put together is not, so each language is a
//! [`Language`], found by its directory name with [`language`]. English ([`ENGLISH`], `en`) is
//! the first; docs/prompts.md says what it says and how to add another.

mod en;

pub use en::{English, ENGLISH};

/// The name of one prompt: `category/name`, e.g. `digits/7`, `phrases/until`.
pub type PromptName = &'static str;

/// Longest string [`Language::say_digits`] accepts (a phone number is at most 15 digits,
/// E.164; an extension or a PIN far fewer).
pub const MAX_DIGITS: usize = 32;

/// Every language Switchboard has prompts for, by the name of its directory under `prompts/`.
pub static LANGUAGES: &[&dyn Language] = &[&ENGLISH];

/// The language whose prompts are in `prompts/<code>/`, if Switchboard has one.
pub fn language(code: &str) -> Option<&'static dyn Language> {
    LANGUAGES.iter().copied().find(|l| l.code() == code)
}

/// How a language builds numbers, digit strings, times and dates from its prompts.
///
/// Each method appends to `out`, so a phrase can be put together from parts: "extension",
/// the digits, "is in a meeting", "until", the time. Every name a method appends is in
/// [`vocabulary`](Language::vocabulary), so a prompt set can be checked once, at load, for
/// everything the language may ask of it.
pub trait Language: Sync {
    /// The directory of the language's prompts under `prompts/` (`en`).
    fn code(&self) -> &'static str;

    /// The hour cycle listeners of this language expect when none is configured.
    fn default_hour_cycle(&self) -> HourCycle;

    /// Says a number: 105 is "one hundred and five" in English.
    fn say_number(&self, n: u32, out: &mut Vec<PromptName>);

    /// Says each character of `digits` on its own (`0`–`9`, `*`, `#`): an extension, a
    /// number, a key to press. Anything else, or more than [`MAX_DIGITS`], is an error and
    /// appends nothing.
    fn say_digits(&self, digits: &str, out: &mut Vec<PromptName>) -> Result<(), SayError>;

    /// Says a time of day in the given hour cycle. The time is the wall-clock time where
    /// the listener is meant to be (a callee's profile end, in their time zone): converting
    /// is the caller's business.
    fn say_time(&self, time: ClockTime, cycle: HourCycle, out: &mut Vec<PromptName>);

    /// Says a day: "Monday the second of January" in English.
    fn say_date(&self, date: DayOfYear, out: &mut Vec<PromptName>);

    /// Every prompt name the methods above can append, each once.
    fn vocabulary(&self) -> &'static [PromptName];
}

/// 24-hour ("fourteen thirty") or 12-hour ("two thirty P.M.") times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HourCycle {
    /// 0–23, no A.M. or P.M.
    H24,
    /// 12, 1–11, then A.M. or P.M.
    H12,
}

/// A time of day to the minute: hour 0–23, minute 0–59.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime {
    hour: u8,
    minute: u8,
}

impl ClockTime {
    /// The time `hour:minute`, if the hour is 0–23 and the minute 0–59.
    pub fn new(hour: u8, minute: u8) -> Result<ClockTime, SayError> {
        if hour < 24 && minute < 60 {
            Ok(ClockTime { hour, minute })
        } else {
            Err(SayError::Time { hour, minute })
        }
    }

    /// 0–23.
    pub fn hour(self) -> u8 {
        self.hour
    }

    /// 0–59.
    pub fn minute(self) -> u8 {
        self.minute
    }
}

/// A day of the year as it is said: its weekday, day of the month and month (no year: an
/// announcement speaks of days within the coming months).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayOfYear {
    weekday: u8,
    day: u8,
    month: u8,
}

impl DayOfYear {
    /// `weekday` counts from Monday = 1 to Sunday = 7 (ISO 8601, chrono's
    /// `number_from_monday`), `day` from 1, `month` from 1 = January. A day the month never
    /// has (31 April, 30 February) is an error; 29 February is accepted.
    pub fn new(weekday: u8, day: u8, month: u8) -> Result<DayOfYear, SayError> {
        const DAYS: [u8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let valid = (1..=7).contains(&weekday)
            && (1..=12).contains(&month)
            && (1..=DAYS[usize::from(month.clamp(1, 12)) - 1]).contains(&day);
        if valid {
            Ok(DayOfYear {
                weekday,
                day,
                month,
            })
        } else {
            Err(SayError::Date {
                weekday,
                day,
                month,
            })
        }
    }

    /// Monday = 1 … Sunday = 7.
    pub fn weekday(self) -> u8 {
        self.weekday
    }

    /// 1–31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// 1–12.
    pub fn month(self) -> u8 {
        self.month
    }
}

/// Something that cannot be said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SayError {
    /// A character other than `0`–`9`, `*`, `#` given to `say_digits`.
    #[error("cannot say {0:?} as a digit (digits, * and # only)")]
    Digit(char),
    /// More than [`MAX_DIGITS`] characters given to `say_digits`.
    #[error("more than {MAX_DIGITS} digits to say")]
    TooManyDigits,
    /// An hour over 23 or a minute over 59.
    #[error("{hour}:{minute:02} is not a time of day")]
    Time { hour: u8, minute: u8 },
    /// A weekday outside 1–7, a month outside 1–12, or a day the month does not have.
    #[error("weekday {weekday}, day {day} of month {month} is not a day")]
    Date { weekday: u8, day: u8, month: u8 },
}

/// The prompts Switchboard says around numbers and times, by what they say. Every language
/// has each of them (the names are the same; the words are the language's).
pub mod phrase {
    use super::PromptName;

    /// "the person you are calling" (before what they are doing, when no name is said).
    pub const THE_PERSON_YOU_ARE_CALLING: PromptName = "phrases/the_person_you_are_calling";
    /// "extension" (before its digits).
    pub const EXTENSION: PromptName = "phrases/extension";
    /// "until" (before a time or a date).
    pub const UNTIL: PromptName = "phrases/until";

    /// What a default profile says of the person: "is at lunch" (profile `lunch`).
    pub const IS_AT_LUNCH: PromptName = "phrases/is_at_lunch";
    /// Profile `meeting`.
    pub const IS_IN_A_MEETING: PromptName = "phrases/is_in_a_meeting";
    /// Profile `left_for_the_day`.
    pub const HAS_LEFT_FOR_THE_DAY: PromptName = "phrases/has_left_for_the_day";
    /// Profile `holiday`.
    pub const IS_ON_HOLIDAY: PromptName = "phrases/is_on_holiday";
    /// Profile `sick_leave`.
    pub const IS_ON_SICK_LEAVE: PromptName = "phrases/is_on_sick_leave";
    /// Profile `out_of_office`.
    pub const IS_OUT_OF_THE_OFFICE: PromptName = "phrases/is_out_of_the_office";
    /// Profile `business_trip`.
    pub const IS_ON_A_BUSINESS_TRIP: PromptName = "phrases/is_on_a_business_trip";
    /// Profile `home_with_sick_child`.
    pub const IS_AT_HOME_WITH_A_SICK_CHILD: PromptName = "phrases/is_at_home_with_a_sick_child";
    /// Profile `training`.
    pub const IS_IN_TRAINING: PromptName = "phrases/is_in_training";

    /// What a profile says of the person, by the profile's id: a default profile's own
    /// phrase (`meeting`: "is in a meeting"), and "is not available" for any other.
    pub fn of_profile(id: &str) -> PromptName {
        match id {
            "lunch" => IS_AT_LUNCH,
            "meeting" => IS_IN_A_MEETING,
            "left_for_the_day" => HAS_LEFT_FOR_THE_DAY,
            "holiday" => IS_ON_HOLIDAY,
            "sick_leave" => IS_ON_SICK_LEAVE,
            "out_of_office" => IS_OUT_OF_THE_OFFICE,
            "business_trip" => IS_ON_A_BUSINESS_TRIP,
            "home_with_sick_child" => IS_AT_HOME_WITH_A_SICK_CHILD,
            "training" => IS_IN_TRAINING,
            _ => IS_NOT_AVAILABLE,
        }
    }

    /// What a status says: "is away" (`away`).
    pub const IS_AWAY: PromptName = "phrases/is_away";
    /// Status `busy`.
    pub const IS_BUSY: PromptName = "phrases/is_busy";
    /// Status `on_break`.
    pub const IS_ON_A_BREAK: PromptName = "phrases/is_on_a_break";
    /// Busy handling: the person is in another call.
    pub const IS_ON_ANOTHER_CALL: PromptName = "phrases/is_on_another_call";
    /// Any other status or profile (`unavailable`, `dnd`, one an operator added).
    pub const IS_NOT_AVAILABLE: PromptName = "phrases/is_not_available";

    /// "thank you for calling".
    pub const THANK_YOU_FOR_CALLING: PromptName = "phrases/thank_you_for_calling";
    /// "our office is now closed".
    pub const OUR_OFFICE_IS_NOW_CLOSED: PromptName = "phrases/our_office_is_now_closed";
    /// "please hold".
    pub const PLEASE_HOLD: PromptName = "phrases/please_hold";
    /// "connecting your call".
    pub const CONNECTING_YOUR_CALL: PromptName = "phrases/connecting_your_call";
    /// "your call is being forwarded" (a forwarding's message when the policy gives none).
    pub const YOUR_CALL_IS_BEING_FORWARDED: PromptName = "phrases/your_call_is_being_forwarded";
    /// "sorry".
    pub const SORRY: PromptName = "phrases/sorry";
    /// "goodbye".
    pub const GOODBYE: PromptName = "phrases/goodbye";

    /// "press" (before a key: "press one for sales").
    pub const PRESS: PromptName = "phrases/press";
    /// "for" (after the key, before what it is for).
    pub const FOR: PromptName = "phrases/for";
    /// "or".
    pub const OR: PromptName = "phrases/or";
    /// A menu's answer to a key it has no entry for: "that is not a valid option".
    pub const INVALID_OPTION: PromptName = "phrases/invalid_option";
    /// "please try again".
    pub const PLEASE_TRY_AGAIN: PromptName = "phrases/please_try_again";

    /// "please leave a message after the tone".
    pub const PLEASE_LEAVE_A_MESSAGE_AFTER_THE_TONE: PromptName =
        "phrases/please_leave_a_message_after_the_tone";
    /// The tone before recording: 0.4 s of 1 kHz.
    pub const BEEP: PromptName = "phrases/beep";
    /// "when you have finished, hang up or press hash".
    pub const WHEN_YOU_HAVE_FINISHED: PromptName = "phrases/when_you_have_finished";
    /// "to leave a message" (after "press" and a key).
    pub const TO_LEAVE_A_MESSAGE: PromptName = "phrases/to_leave_a_message";
    /// "the mailbox is full".
    pub const THE_MAILBOX_IS_FULL: PromptName = "phrases/the_mailbox_is_full";
    /// "you have" (before a count of messages, or "no").
    pub const YOU_HAVE: PromptName = "phrases/you_have";
    /// "no" ("you have no new messages").
    pub const NO: PromptName = "phrases/no";
    /// "new message" (after "one").
    pub const NEW_MESSAGE: PromptName = "phrases/new_message";
    /// "new messages".
    pub const NEW_MESSAGES: PromptName = "phrases/new_messages";
    /// "saved message".
    pub const SAVED_MESSAGE: PromptName = "phrases/saved_message";
    /// "saved messages".
    pub const SAVED_MESSAGES: PromptName = "phrases/saved_messages";
    /// "to listen to your messages".
    pub const TO_LISTEN_TO_YOUR_MESSAGES: PromptName = "phrases/to_listen_to_your_messages";
    /// "to save this message".
    pub const TO_SAVE_THIS_MESSAGE: PromptName = "phrases/to_save_this_message";
    /// "to delete this message".
    pub const TO_DELETE_THIS_MESSAGE: PromptName = "phrases/to_delete_this_message";
    /// "message saved".
    pub const MESSAGE_SAVED: PromptName = "phrases/message_saved";
    /// "message deleted".
    pub const MESSAGE_DELETED: PromptName = "phrases/message_deleted";
    /// "there are no more messages".
    pub const NO_MORE_MESSAGES: PromptName = "phrases/no_more_messages";
    /// "received" (before when a message came).
    pub const RECEIVED: PromptName = "phrases/received";
    /// "from" (before who left it, or who calls).
    pub const FROM: PromptName = "phrases/from";

    /// "you have a call" (confirming a forwarded call).
    pub const YOU_HAVE_A_CALL: PromptName = "phrases/you_have_a_call";
    /// "to accept the call" (after "press" and a key).
    pub const TO_ACCEPT_THE_CALL: PromptName = "phrases/to_accept_the_call";
    /// "to decline the call".
    pub const TO_DECLINE_THE_CALL: PromptName = "phrases/to_decline_the_call";

    /// "message".
    pub const MESSAGE: PromptName = "phrases/message";
    /// "an unknown caller".
    pub const AN_UNKNOWN_CALLER: PromptName = "phrases/an_unknown_caller";
    /// "please enter your mailbox number, then press hash".
    pub const PLEASE_ENTER_YOUR_MAILBOX_NUMBER: PromptName =
        "phrases/please_enter_your_mailbox_number";
    /// "please enter your pin, then press hash".
    pub const PLEASE_ENTER_YOUR_PIN: PromptName = "phrases/please_enter_your_pin";
    /// "for mailbox options".
    pub const FOR_MAILBOX_OPTIONS: PromptName = "phrases/for_mailbox_options";
    /// "to finish".
    pub const TO_FINISH: PromptName = "phrases/to_finish";
    /// "to replay this message".
    pub const TO_REPLAY_THIS_MESSAGE: PromptName = "phrases/to_replay_this_message";
    /// "for the next message".
    pub const FOR_THE_NEXT_MESSAGE: PromptName = "phrases/for_the_next_message";
    /// "to go back".
    pub const TO_GO_BACK: PromptName = "phrases/to_go_back";
    /// "to record your greeting".
    pub const TO_RECORD_YOUR_GREETING: PromptName = "phrases/to_record_your_greeting";
    /// "to record your name".
    pub const TO_RECORD_YOUR_NAME: PromptName = "phrases/to_record_your_name";
    /// "to delete your greeting".
    pub const TO_DELETE_YOUR_GREETING: PromptName = "phrases/to_delete_your_greeting";
    /// "record after the tone, then press hash".
    pub const RECORD_AFTER_THE_TONE: PromptName = "phrases/record_after_the_tone";
    /// "you recorded".
    pub const YOU_RECORDED: PromptName = "phrases/you_recorded";
    /// "to keep it".
    pub const TO_KEEP_IT: PromptName = "phrases/to_keep_it";
    /// "to record again".
    pub const TO_RECORD_AGAIN: PromptName = "phrases/to_record_again";
    /// "your greeting has been saved".
    pub const YOUR_GREETING_IS_SAVED: PromptName = "phrases/your_greeting_is_saved";
    /// "your name has been saved".
    pub const YOUR_NAME_IS_SAVED: PromptName = "phrases/your_name_is_saved";
    /// "your greeting has been deleted".
    pub const YOUR_GREETING_IS_DELETED: PromptName = "phrases/your_greeting_is_deleted";
    /// "yesterday" (when a message was received).
    pub const YESTERDAY: PromptName = "time/yesterday";
    /// "tomorrow" (until when a profile lasts).
    pub const TOMORROW: PromptName = "time/tomorrow";
    /// "at" (before a time of day: "tomorrow at nine").
    pub const AT: PromptName = "time/at";

    /// The words of time the daemon says around a language's dates and times (not
    /// phrases: they are in the `time` category), for checking a prompt set has them.
    pub const TIME_WORDS: &[PromptName] = &[YESTERDAY, TOMORROW, AT];

    /// Every constant above, for checking a prompt set has them.
    pub const ALL: &[PromptName] = &[
        THE_PERSON_YOU_ARE_CALLING,
        EXTENSION,
        UNTIL,
        IS_AT_LUNCH,
        IS_IN_A_MEETING,
        HAS_LEFT_FOR_THE_DAY,
        IS_ON_HOLIDAY,
        IS_ON_SICK_LEAVE,
        IS_OUT_OF_THE_OFFICE,
        IS_ON_A_BUSINESS_TRIP,
        IS_AT_HOME_WITH_A_SICK_CHILD,
        IS_IN_TRAINING,
        IS_AWAY,
        IS_BUSY,
        IS_ON_A_BREAK,
        IS_ON_ANOTHER_CALL,
        IS_NOT_AVAILABLE,
        THANK_YOU_FOR_CALLING,
        OUR_OFFICE_IS_NOW_CLOSED,
        PLEASE_HOLD,
        CONNECTING_YOUR_CALL,
        YOUR_CALL_IS_BEING_FORWARDED,
        SORRY,
        GOODBYE,
        PRESS,
        FOR,
        OR,
        INVALID_OPTION,
        PLEASE_TRY_AGAIN,
        PLEASE_LEAVE_A_MESSAGE_AFTER_THE_TONE,
        BEEP,
        WHEN_YOU_HAVE_FINISHED,
        TO_LEAVE_A_MESSAGE,
        THE_MAILBOX_IS_FULL,
        YOU_HAVE,
        NO,
        NEW_MESSAGE,
        NEW_MESSAGES,
        SAVED_MESSAGE,
        SAVED_MESSAGES,
        TO_LISTEN_TO_YOUR_MESSAGES,
        TO_SAVE_THIS_MESSAGE,
        TO_DELETE_THIS_MESSAGE,
        MESSAGE_SAVED,
        MESSAGE_DELETED,
        NO_MORE_MESSAGES,
        RECEIVED,
        FROM,
        YOU_HAVE_A_CALL,
        TO_ACCEPT_THE_CALL,
        TO_DECLINE_THE_CALL,
        MESSAGE,
        AN_UNKNOWN_CALLER,
        PLEASE_ENTER_YOUR_MAILBOX_NUMBER,
        PLEASE_ENTER_YOUR_PIN,
        FOR_MAILBOX_OPTIONS,
        TO_FINISH,
        TO_REPLAY_THIS_MESSAGE,
        FOR_THE_NEXT_MESSAGE,
        TO_GO_BACK,
        TO_RECORD_YOUR_GREETING,
        TO_RECORD_YOUR_NAME,
        TO_DELETE_YOUR_GREETING,
        RECORD_AFTER_THE_TONE,
        YOU_RECORDED,
        TO_KEEP_IT,
        TO_RECORD_AGAIN,
        YOUR_GREETING_IS_SAVED,
        YOUR_NAME_IS_SAVED,
        YOUR_GREETING_IS_DELETED,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// The committed prompts of a language.
    pub(super) fn committed(language: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../prompts")
            .join(language)
    }

    /// The names of the committed WAV files of a language (`category/name`).
    pub(super) fn committed_names(language: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let dir = committed(language);
        for category in std::fs::read_dir(&dir).unwrap() {
            let category = category.unwrap();
            if !category.file_type().unwrap().is_dir() {
                continue;
            }
            for file in std::fs::read_dir(category.path()).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_some_and(|e| e == "wav") {
                    names.insert(format!(
                        "{}/{}",
                        category.file_name().to_str().unwrap(),
                        path.file_stem().unwrap().to_str().unwrap()
                    ));
                }
            }
        }
        names
    }

    #[test]
    fn languages_are_found_by_their_directory() {
        assert_eq!(language("en").unwrap().code(), "en");
        assert!(language("fr").is_none());
        assert!(language("").is_none());
        let codes: BTreeSet<_> = LANGUAGES.iter().map(|l| l.code()).collect();
        assert_eq!(codes.len(), LANGUAGES.len(), "one entry per language");
    }

    #[test]
    fn every_language_has_its_vocabulary_and_the_phrases_committed() {
        for language in LANGUAGES {
            let files = committed_names(language.code());
            let vocabulary = language.vocabulary();
            let unique: BTreeSet<_> = vocabulary.iter().collect();
            assert_eq!(
                unique.len(),
                vocabulary.len(),
                "{}: vocabulary repeats a name",
                language.code()
            );
            for name in vocabulary
                .iter()
                .chain(phrase::ALL)
                .chain(phrase::TIME_WORDS)
            {
                assert!(
                    files.contains(*name),
                    "prompts/{}/{name}.wav is not committed (add it to prompts/{}/prompts.txt and run scripts/make-prompts)",
                    language.code(),
                    language.code()
                );
            }
        }
    }

    #[test]
    fn phrase_constants_are_distinct_phrases() {
        let unique: BTreeSet<_> = phrase::ALL.iter().collect();
        assert_eq!(unique.len(), phrase::ALL.len());
        assert!(phrase::ALL.iter().all(|n| n.starts_with("phrases/")));
    }

    #[test]
    fn clock_times_are_checked() {
        assert!(ClockTime::new(0, 0).is_ok());
        assert!(ClockTime::new(23, 59).is_ok());
        assert_eq!(
            ClockTime::new(24, 0),
            Err(SayError::Time {
                hour: 24,
                minute: 0
            })
        );
        assert!(ClockTime::new(12, 60).is_err());
        assert!(ClockTime::new(255, 255).is_err());
        let t = ClockTime::new(14, 30).unwrap();
        assert_eq!((t.hour(), t.minute()), (14, 30));
        assert_eq!(
            SayError::Time { hour: 9, minute: 5 }.to_string(),
            "9:05 is not a time of day"
        );
    }

    #[test]
    fn days_are_checked() {
        assert!(DayOfYear::new(1, 1, 1).is_ok());
        assert!(DayOfYear::new(7, 31, 12).is_ok());
        assert!(DayOfYear::new(4, 29, 2).is_ok());
        for (weekday, day, month) in [
            (0, 1, 1),
            (8, 1, 1),
            (1, 0, 1),
            (1, 1, 0),
            (1, 1, 13),
            (1, 30, 2),
            (1, 31, 4),
            (1, 31, 6),
            (1, 31, 9),
            (1, 31, 11),
            (1, 32, 1),
            (255, 255, 255),
        ] {
            assert_eq!(
                DayOfYear::new(weekday, day, month),
                Err(SayError::Date {
                    weekday,
                    day,
                    month
                }),
                "{weekday} {day} {month}"
            );
        }
        let d = DayOfYear::new(3, 14, 6).unwrap();
        assert_eq!((d.weekday(), d.day(), d.month()), (3, 14, 6));
    }
}
