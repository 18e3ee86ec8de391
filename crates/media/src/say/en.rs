//! English, as a British listener expects it (a US listener understands it too):
//!
//! - **Numbers** put "and" before the tens and units, within each group of three digits and
//!   before a last group under a hundred: 105 "one hundred and five", 1005 "one thousand and
//!   five", 2,100,005 "two million one hundred thousand and five"; 45 "forty five" (two
//!   prompts, "forty" and "five"). Up to 4,294,967,295 (billions, short scale).
//! - **Digits** say 0 as "zero" ("one zero one"): clear on a poor line and in every English,
//!   where "oh" can be heard as "four" or missed; `*` is "star", `#` is "hash".
//! - **Times**, 24-hour by default, as British timetables and the example say them:
//!   14:30 "fourteen thirty", 09:05 "nine oh five" (a minute under ten gets "oh"), 14:00
//!   "fourteen hundred", 09:00 "nine hundred", 00:00 "midnight", and the other minutes of
//!   hour zero "zero zero thirty", "zero zero oh five". 12-hour for those who want it: "two
//!   thirty P.M.", "nine oh five A.M.", "two P.M.", "noon", "midnight", 00:30 "twelve thirty
//!   A.M.".
//! - **Dates**: "Monday the second of January".

use super::{ClockTime, DayOfYear, HourCycle, Language, PromptName, SayError, MAX_DIGITS};
use std::sync::LazyLock;

/// English (`prompts/en`).
#[derive(Debug, Clone, Copy, Default)]
pub struct English;

/// English, for [`super::LANGUAGES`].
pub static ENGLISH: English = English;

/// 0–19, by value.
const ONES: [PromptName; 20] = [
    "digits/0",
    "digits/1",
    "digits/2",
    "digits/3",
    "digits/4",
    "digits/5",
    "digits/6",
    "digits/7",
    "digits/8",
    "digits/9",
    "digits/10",
    "digits/11",
    "digits/12",
    "digits/13",
    "digits/14",
    "digits/15",
    "digits/16",
    "digits/17",
    "digits/18",
    "digits/19",
];

/// 20, 30 … 90, by the tens digit (0 and 1 unused).
const TENS: [PromptName; 10] = [
    "",
    "",
    "digits/20",
    "digits/30",
    "digits/40",
    "digits/50",
    "digits/60",
    "digits/70",
    "digits/80",
    "digits/90",
];

/// "first" … "thirty-first", by day − 1.
const ORDINALS: [PromptName; 31] = [
    "digits/1st",
    "digits/2nd",
    "digits/3rd",
    "digits/4th",
    "digits/5th",
    "digits/6th",
    "digits/7th",
    "digits/8th",
    "digits/9th",
    "digits/10th",
    "digits/11th",
    "digits/12th",
    "digits/13th",
    "digits/14th",
    "digits/15th",
    "digits/16th",
    "digits/17th",
    "digits/18th",
    "digits/19th",
    "digits/20th",
    "digits/21st",
    "digits/22nd",
    "digits/23rd",
    "digits/24th",
    "digits/25th",
    "digits/26th",
    "digits/27th",
    "digits/28th",
    "digits/29th",
    "digits/30th",
    "digits/31st",
];

/// Monday … Sunday, by ISO weekday − 1.
const WEEKDAYS: [PromptName; 7] = [
    "time/monday",
    "time/tuesday",
    "time/wednesday",
    "time/thursday",
    "time/friday",
    "time/saturday",
    "time/sunday",
];

/// January … December, by month − 1.
const MONTHS: [PromptName; 12] = [
    "time/january",
    "time/february",
    "time/march",
    "time/april",
    "time/may",
    "time/june",
    "time/july",
    "time/august",
    "time/september",
    "time/october",
    "time/november",
    "time/december",
];

const HUNDRED: PromptName = "digits/hundred";
const AND: PromptName = "digits/and";
const OH: PromptName = "digits/oh";
const STAR: PromptName = "digits/star";
const HASH: PromptName = "digits/hash";
const MIDNIGHT: PromptName = "time/midnight";
const NOON: PromptName = "time/noon";
const A_M: PromptName = "time/a_m";
const P_M: PromptName = "time/p_m";
const THE: PromptName = "time/the";
const OF: PromptName = "time/of";

/// The groups of three digits above the units, largest first.
const SCALES: [(u32, PromptName); 3] = [
    (1_000_000_000, "digits/billion"),
    (1_000_000, "digits/million"),
    (1_000, "digits/thousand"),
];

/// Every name English's methods append (checked against them by the tests): the tables
/// above, and the words between them.
static VOCABULARY: LazyLock<Vec<PromptName>> = LazyLock::new(|| {
    let words = [
        HUNDRED, AND, OH, STAR, HASH, MIDNIGHT, NOON, A_M, P_M, THE, OF,
    ];
    // TENS[0] and TENS[1] are unused ("").
    ONES.iter()
        .chain(TENS.iter().filter(|t| !t.is_empty()))
        .chain(SCALES.iter().map(|(_, name)| name))
        .chain(ORDINALS.iter())
        .chain(WEEKDAYS.iter())
        .chain(MONTHS.iter())
        .chain(words.iter())
        .copied()
        .fold(Vec::new(), |mut v, n| {
            if !v.contains(&n) {
                v.push(n);
            }
            v
        })
});

/// 1–99: "seven", "seventeen", "seventy", "seventy" "seven".
fn below_hundred(n: u32, out: &mut Vec<PromptName>) {
    debug_assert!((1..100).contains(&n));
    if n < 20 {
        out.push(ONES[n as usize]);
    } else {
        out.push(TENS[(n / 10) as usize]);
        if !n.is_multiple_of(10) {
            out.push(ONES[(n % 10) as usize]);
        }
    }
}

/// 1–999: "three hundred and seven", "three hundred", "seven".
fn below_thousand(n: u32, out: &mut Vec<PromptName>) {
    debug_assert!((1..1000).contains(&n));
    let (hundreds, rest) = (n / 100, n % 100);
    if hundreds > 0 {
        out.push(ONES[hundreds as usize]);
        out.push(HUNDRED);
        if rest > 0 {
            out.push(AND);
        }
    }
    if rest > 0 {
        below_hundred(rest, out);
    }
}

/// The minutes of a time that has some: "oh five", "thirty", "forty five".
fn minutes(minute: u8, out: &mut Vec<PromptName>) {
    debug_assert!((1..60).contains(&minute));
    if minute < 10 {
        out.push(OH);
    }
    below_hundred(u32::from(minute), out);
}

impl Language for English {
    fn code(&self) -> &'static str {
        "en"
    }

    fn default_hour_cycle(&self) -> HourCycle {
        HourCycle::H24
    }

    fn say_number(&self, n: u32, out: &mut Vec<PromptName>) {
        if n == 0 {
            out.push(ONES[0]);
            return;
        }
        let mut rest = n;
        for (scale, word) in SCALES {
            if rest >= scale {
                below_thousand(rest / scale, out);
                out.push(word);
                rest %= scale;
            }
        }
        if rest > 0 {
            // "one thousand and five": a last group under a hundred after a larger one.
            if n > rest && rest < 100 {
                out.push(AND);
            }
            below_thousand(rest, out);
        }
    }

    fn say_digits(&self, digits: &str, out: &mut Vec<PromptName>) -> Result<(), SayError> {
        if digits.len() > MAX_DIGITS {
            return Err(SayError::TooManyDigits);
        }
        let start = out.len();
        for c in digits.chars() {
            let name = match c {
                '0'..='9' => ONES[usize::from(c as u8 - b'0')],
                '*' => STAR,
                '#' => HASH,
                _ => {
                    out.truncate(start);
                    return Err(SayError::Digit(c));
                }
            };
            out.push(name);
        }
        Ok(())
    }

    fn say_time(&self, time: ClockTime, cycle: HourCycle, out: &mut Vec<PromptName>) {
        let (hour, minute) = (time.hour(), time.minute());
        match cycle {
            HourCycle::H24 => match (hour, minute) {
                (0, 0) => out.push(MIDNIGHT),
                (0, _) => {
                    out.extend([ONES[0], ONES[0]]);
                    minutes(minute, out);
                }
                (_, 0) => {
                    below_hundred(u32::from(hour), out);
                    out.push(HUNDRED);
                }
                _ => {
                    below_hundred(u32::from(hour), out);
                    minutes(minute, out);
                }
            },
            HourCycle::H12 => match (hour, minute) {
                (0, 0) => out.push(MIDNIGHT),
                (12, 0) => out.push(NOON),
                _ => {
                    let twelve = match hour % 12 {
                        0 => 12,
                        h => h,
                    };
                    below_hundred(u32::from(twelve), out);
                    if minute > 0 {
                        minutes(minute, out);
                    }
                    out.push(if hour < 12 { A_M } else { P_M });
                }
            },
        }
    }

    fn say_date(&self, date: DayOfYear, out: &mut Vec<PromptName>) {
        out.extend([
            WEEKDAYS[usize::from(date.weekday() - 1)],
            THE,
            ORDINALS[usize::from(date.day() - 1)],
            OF,
            MONTHS[usize::from(date.month() - 1)],
        ]);
    }

    fn vocabulary(&self) -> &'static [PromptName] {
        &VOCABULARY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn number(n: u32) -> Vec<PromptName> {
        let mut out = Vec::new();
        ENGLISH.say_number(n, &mut out);
        out
    }

    fn time(hour: u8, minute: u8, cycle: HourCycle) -> Vec<PromptName> {
        let mut out = Vec::new();
        ENGLISH.say_time(ClockTime::new(hour, minute).unwrap(), cycle, &mut out);
        out
    }

    fn digits(s: &str) -> Result<Vec<PromptName>, SayError> {
        let mut out = Vec::new();
        ENGLISH.say_digits(s, &mut out).map(|()| out)
    }

    fn date(weekday: u8, day: u8, month: u8) -> Vec<PromptName> {
        let mut out = Vec::new();
        ENGLISH.say_date(DayOfYear::new(weekday, day, month).unwrap(), &mut out);
        out
    }

    /// The names as the words they say, for readable expectations: "digits/40 digits/5"
    /// becomes "forty five".
    fn words(names: &[PromptName]) -> String {
        let manifest =
            std::fs::read_to_string(super::super::tests::committed("en").join("prompts.txt"))
                .unwrap();
        let texts: BTreeMap<&str, &str> = manifest
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('@'))
            .map(|l| {
                let (name, text) = l.split_once(char::is_whitespace).unwrap();
                (name, text.trim())
            })
            .collect();
        names
            .iter()
            .map(|n| {
                *texts
                    .get(n)
                    .unwrap_or_else(|| panic!("{n} not in prompts.txt"))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The value of one number word, if it is one (0–19, the tens).
    fn small(name: PromptName) -> Option<u32> {
        let n: u32 = name.strip_prefix("digits/")?.parse().ok()?;
        (n < 20 || (n < 100 && n.is_multiple_of(10))).then_some(n)
    }

    /// A listener: the number a sequence of number prompts says, checking the grammar on
    /// the way (so a sequence that only adds up right, "one hundred one", fails). Written
    /// from the words, not from `say_number`, so the two check each other.
    fn hear_number(names: &[PromptName]) -> u64 {
        let scale = |n: PromptName| match n {
            "digits/thousand" => Some(1_000),
            "digits/million" => Some(1_000_000),
            "digits/billion" => Some(1_000_000_000u64),
            _ => None,
        };
        let mut total = 0u64;
        let mut group = 0u64; // the group of three digits being heard
        let mut last_scale = u64::MAX;
        let mut i = 0;
        while i < names.len() {
            let name = names[i];
            if let Some(v) = small(name) {
                // A units word may follow a tens word ("forty five"), nothing else.
                let v = u64::from(v);
                match names.get(i + 1).and_then(|n| small(n)) {
                    Some(u) if v >= 20 && (1..10).contains(&u) => {
                        group += v + u64::from(u);
                        i += 1;
                    }
                    Some(_) => panic!("{names:?}: two number words in a row at {i}"),
                    None => group += v,
                }
                if names.get(i + 1) == Some(&HUNDRED) {
                    assert!((1..10).contains(&group), "{names:?}: {group} hundred");
                    group *= 100;
                    i += 1;
                    match names.get(i + 1) {
                        Some(&AND) => {
                            let next = names.get(i + 2).copied().and_then(small);
                            assert!(
                                next.is_some_and(|n| n > 0),
                                "{names:?}: and before {next:?}"
                            );
                            i += 1;
                        }
                        Some(n) => assert!(scale(n).is_some(), "{names:?}: hundred then {n}"),
                        None => {}
                    }
                }
            } else if let Some(s) = scale(name) {
                assert!(s < last_scale, "{names:?}: {name} after a smaller scale");
                assert!((1..1000).contains(&group), "{names:?}: {group} {name}");
                total += group * s;
                group = 0;
                last_scale = s;
                if names.get(i + 1) == Some(&AND) {
                    // Only before a last group under a hundred.
                    let rest = &names[i + 2..];
                    assert!(
                        !rest.is_empty()
                            && rest.len() <= 2
                            && rest.iter().all(|n| small(n).is_some()),
                        "{names:?}: and before {rest:?}"
                    );
                    i += 1;
                }
            } else {
                panic!("{names:?}: {name} is not a number word");
            }
            i += 1;
        }
        total + group
    }

    /// British usage: the number of "and"s `say_number` must put in `n`.
    fn ands(n: u32) -> usize {
        let mut count = 0;
        let mut rest = n;
        let mut higher = false;
        for scale in [1_000_000_000, 1_000_000, 1_000, 1] {
            let group = rest / scale;
            rest %= scale;
            if group == 0 {
                continue;
            }
            if group >= 100 && !group.is_multiple_of(100) {
                count += 1;
            }
            if scale == 1 && group < 100 && higher {
                count += 1;
            }
            higher = true;
        }
        count
    }

    fn check_number(n: u32) {
        let said = number(n);
        assert_eq!(hear_number(&said), u64::from(n), "{n}: {said:?}");
        assert_eq!(
            said.iter().filter(|w| **w == AND).count(),
            ands(n),
            "{n}: {said:?}"
        );
        for name in &said {
            assert!(
                VOCABULARY.contains(name),
                "{n}: {name} not in the vocabulary"
            );
        }
    }

    #[test]
    fn every_number_to_a_thousand_is_said_and_heard_back() {
        let mut seen = BTreeSet::new();
        for n in 0..=1000 {
            check_number(n);
            assert!(seen.insert(number(n)), "{n} said like another number");
        }
    }

    #[test]
    fn numbers_across_the_whole_range_are_said_and_heard_back() {
        // Every power of ten and its neighbours, the group edges, and a spread of others
        // (a fixed sequence, the same every run).
        let mut samples = vec![u32::MAX, u32::MAX - 1, 999_999_999, 1_000_000_000];
        let mut p = 1u64;
        while p <= u64::from(u32::MAX) {
            for d in [p - 1, p, p + 1, 5 * p, 9 * p + 9] {
                if let Ok(d) = u32::try_from(d) {
                    samples.push(d);
                }
            }
            p *= 10;
        }
        let mut x: u32 = 0x2545_f491;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            samples.push(x);
            samples.push(x % 1_000_000);
            samples.push(x % 1_000_000 * 1000);
        }
        for n in samples {
            check_number(n);
        }
    }

    #[test]
    fn numbers_sound_as_british_english_says_them() {
        for (n, said) in [
            (0, "zero"),
            (7, "seven"),
            (13, "thirteen"),
            (20, "twenty"),
            (45, "forty five"),
            (99, "ninety nine"),
            (100, "one hundred"),
            (101, "one hundred and one"),
            (105, "one hundred and five"),
            (110, "one hundred and ten"),
            (115, "one hundred and fifteen"),
            (342, "three hundred and forty two"),
            (999, "nine hundred and ninety nine"),
            (1000, "one thousand"),
            (1001, "one thousand and one"),
            (1010, "one thousand and ten"),
            (1100, "one thousand one hundred"),
            (1105, "one thousand one hundred and five"),
            (2024, "two thousand and twenty four"),
            (12_345, "twelve thousand three hundred and forty five"),
            (100_000, "one hundred thousand"),
            (105_000, "one hundred and five thousand"),
            (1_000_000, "one million"),
            (1_000_010, "one million and ten"),
            (1_001_000, "one million one thousand"),
            (2_100_005, "two million one hundred thousand and five"),
            (
                999_999_999,
                "nine hundred and ninety nine million nine hundred and ninety nine thousand \
                 nine hundred and ninety nine",
            ),
            (
                u32::MAX,
                "four billion two hundred and ninety four million nine hundred and sixty \
                 seven thousand two hundred and ninety five",
            ),
        ] {
            assert_eq!(words(&number(n)), said, "{n}");
        }
    }

    #[test]
    fn say_number_appends() {
        let mut out = vec![super::super::phrase::YOU_HAVE];
        ENGLISH.say_number(3, &mut out);
        assert_eq!(out, ["phrases/you_have", "digits/3"]);
    }

    #[test]
    fn digits_are_said_one_by_one_with_zero_star_and_hash() {
        assert_eq!(words(&digits("101").unwrap()), "one zero one");
        assert_eq!(
            words(&digits("0123456789*#").unwrap()),
            "zero one two three four five six seven eight nine star hash"
        );
        assert_eq!(digits(""), Ok(vec![]));
        for c in '\0'..='\u{2ff}' {
            let expected = match c {
                '0'..='9' => Ok(vec![ONES[c as usize - '0' as usize]]),
                '*' => Ok(vec![STAR]),
                '#' => Ok(vec![HASH]),
                _ => Err(SayError::Digit(c)),
            };
            assert_eq!(digits(&c.to_string()), expected, "{c:?}");
        }
        assert_eq!(digits("+441632960000"), Err(SayError::Digit('+')));
        assert_eq!(digits("12a"), Err(SayError::Digit('a')));
        assert_eq!(digits(&"1".repeat(MAX_DIGITS)).unwrap().len(), MAX_DIGITS);
        assert_eq!(
            digits(&"1".repeat(MAX_DIGITS + 1)),
            Err(SayError::TooManyDigits)
        );
        // A refused string appends nothing.
        let mut out = vec![OH];
        assert!(ENGLISH.say_digits("12x", &mut out).is_err());
        assert_eq!(out, [OH]);
    }

    /// A listener for times: the hour and minute a 24-hour time says.
    fn hear_time_24(names: &[PromptName]) -> (u8, u8) {
        match names {
            [MIDNIGHT] => (0, 0),
            ["digits/0", "digits/0", rest @ ..] => (0, hear_minutes(names, rest)),
            [hour @ .., HUNDRED] => {
                let h = hear_number(hour);
                assert!((1..24).contains(&h), "{names:?}");
                (h as u8, 0)
            }
            _ => {
                // The hour is one word, or two (twenty one … twenty three).
                // (Minutes never start with a bare digit: "oh five", "thirty".)
                let split = match names {
                    ["digits/20", units, ..] if small(units).is_some_and(|u| u < 10) => 2,
                    _ => 1,
                };
                let h = hear_number(&names[..split]);
                assert!((1..24).contains(&h), "{names:?}");
                (h as u8, hear_minutes(names, &names[split..]))
            }
        }
    }

    /// The minutes of a time: "oh" and a digit, or ten to fifty-nine.
    fn hear_minutes(names: &[PromptName], rest: &[PromptName]) -> u8 {
        let m = match rest {
            [OH, digit] => {
                let m = hear_number(&[digit]);
                assert!((1..10).contains(&m), "{names:?}");
                m
            }
            _ => {
                let m = hear_number(rest);
                assert!((10..60).contains(&m), "{names:?}");
                m
            }
        };
        m as u8
    }

    /// A listener for 12-hour times.
    fn hear_time_12(names: &[PromptName]) -> (u8, u8) {
        match names {
            [MIDNIGHT] => (0, 0),
            [NOON] => (12, 0),
            [rest @ .., half] => {
                let pm = match *half {
                    A_M => false,
                    P_M => true,
                    other => panic!("{names:?}: ends with {other}"),
                };
                let (hour, minute) = match rest {
                    [hour] => (hear_number(&[hour]), 0),
                    [hour, minutes @ ..] => (hear_number(&[hour]), hear_minutes(names, minutes)),
                    [] => panic!("{names:?}"),
                };
                assert!((1..=12).contains(&hour), "{names:?}");
                let hour = (hour % 12) as u8 + if pm { 12 } else { 0 };
                (hour, minute)
            }
            [] => panic!("nothing said"),
        }
    }

    #[test]
    fn every_minute_of_the_day_is_said_and_heard_back() {
        for cycle in [HourCycle::H24, HourCycle::H12] {
            let mut seen = BTreeSet::new();
            for hour in 0..24 {
                for minute in 0..60 {
                    let said = time(hour, minute, cycle);
                    let heard = match cycle {
                        HourCycle::H24 => hear_time_24(&said),
                        HourCycle::H12 => hear_time_12(&said),
                    };
                    assert_eq!(heard, (hour, minute), "{cycle:?}: {said:?}");
                    assert!(
                        seen.insert(said.clone()),
                        "{cycle:?} {hour}:{minute}: {said:?} twice"
                    );
                    for name in &said {
                        assert!(VOCABULARY.contains(name), "{name} not in the vocabulary");
                    }
                    // "oh" exactly when the minute has one digit.
                    assert_eq!(said.contains(&OH), (1..10).contains(&minute), "{said:?}");
                }
            }
            assert_eq!(seen.len(), 24 * 60);
        }
    }

    #[test]
    fn times_sound_as_a_listener_expects() {
        for (hour, minute, h24, h12) in [
            (0, 0, "midnight", "midnight"),
            (0, 5, "zero zero oh five", "twelve oh five A.M."),
            (0, 30, "zero zero thirty", "twelve thirty A.M."),
            (1, 0, "one hundred", "one A.M."),
            (9, 0, "nine hundred", "nine A.M."),
            (9, 5, "nine oh five", "nine oh five A.M."),
            (9, 45, "nine forty five", "nine forty five A.M."),
            (10, 10, "ten ten", "ten ten A.M."),
            (12, 0, "twelve hundred", "noon"),
            (12, 30, "twelve thirty", "twelve thirty P.M."),
            (13, 1, "thirteen oh one", "one oh one P.M."),
            (14, 0, "fourteen hundred", "two P.M."),
            (14, 30, "fourteen thirty", "two thirty P.M."),
            (20, 15, "twenty fifteen", "eight fifteen P.M."),
            (21, 0, "twenty one hundred", "nine P.M."),
            (23, 59, "twenty three fifty nine", "eleven fifty nine P.M."),
        ] {
            assert_eq!(
                words(&time(hour, minute, HourCycle::H24)),
                h24,
                "{hour}:{minute}"
            );
            assert_eq!(
                words(&time(hour, minute, HourCycle::H12)),
                h12,
                "{hour}:{minute}"
            );
        }
        assert_eq!(ENGLISH.default_hour_cycle(), HourCycle::H24);
    }

    #[test]
    fn every_day_of_the_year_is_said() {
        let mut seen = BTreeSet::new();
        for month in 1..=12 {
            for day in 1..=31 {
                for weekday in 1..=7 {
                    let Ok(d) = DayOfYear::new(weekday, day, month) else {
                        continue;
                    };
                    let mut said = Vec::new();
                    ENGLISH.say_date(d, &mut said);
                    assert_eq!(said.len(), 5);
                    assert_eq!(said[0], WEEKDAYS[usize::from(weekday) - 1]);
                    assert_eq!(said[2], ORDINALS[usize::from(day) - 1]);
                    assert_eq!(said[4], MONTHS[usize::from(month) - 1]);
                    assert!(said.iter().all(|n| VOCABULARY.contains(n)));
                    assert!(seen.insert(said));
                }
            }
        }
        assert_eq!(seen.len(), 366 * 7);
        assert_eq!(words(&date(1, 2, 1)), "monday the second of january");
        assert_eq!(
            words(&date(5, 31, 12)),
            "friday the thirty-first of december"
        );
        assert_eq!(
            words(&date(4, 29, 2)),
            "thursday the twenty-ninth of february"
        );
        assert_eq!(words(&date(7, 23, 8)), "sunday the twenty-third of august");
    }

    #[test]
    fn the_vocabulary_is_exactly_what_the_methods_say() {
        let mut said = BTreeSet::new();
        for n in (0..=1000).chain([1_000_000, 1_000_000_000]) {
            said.extend(number(n));
        }
        said.extend(digits("0123456789*#").unwrap());
        for hour in 0..24 {
            for minute in 0..60 {
                said.extend(time(hour, minute, HourCycle::H24));
                said.extend(time(hour, minute, HourCycle::H12));
            }
        }
        for (weekday, day, month) in (1..=12).map(|m| (1 + m % 7, m + 19, m)) {
            said.extend(date(weekday, day, month));
        }
        for day in 1..=31 {
            said.extend(date(1, day, 1));
        }
        let vocabulary: BTreeSet<_> = VOCABULARY.iter().copied().collect();
        assert_eq!(said, vocabulary);
    }
}
