//! Telephone numbers as a carrier writes them and as Switchboard keeps them.
//!
//! Inside, a public number is in E.164 form with its `+` (`+441632960000`): DIDs are
//! compared, forward targets matched and caller IDs chosen in that one form. Each trunk has
//! a [`NumberPlan`] saying how its carrier writes numbers — with `+`, nationally with a trunk
//! prefix (`01632 960000` in the UK), or with an international prefix (`00441632960000`) —
//! so a number arriving from it is read into the inside form ([`NumberPlan::to_e164`]) and
//! one leaving through it is written as the carrier wants ([`NumberPlan::format`]).
//! Anything that is not a telephone number (a short code, an extension, a name) is left as
//! it is.

/// How a carrier writes the numbers it is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NumberFormat {
    /// `+441632960000`.
    #[default]
    E164,
    /// `01632960000` for numbers of the carrier's country, international form for others.
    National,
    /// `00441632960000`.
    International,
}

/// A trunk's numbering: its country and prefixes, and the form its carrier wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberPlan {
    /// The carrier's country calling code (`44`), without `+`: national numbers belong to it.
    /// Without one, national numbers cannot be told and are left as they are.
    pub country_code: Option<String>,
    /// What starts a national number (`0`).
    pub national_prefix: String,
    /// What starts an international number (`00`; `011` in North America).
    pub international_prefix: String,
    /// How numbers leave through the trunk (called number and caller ID).
    pub send: NumberFormat,
}

impl Default for NumberPlan {
    fn default() -> Self {
        NumberPlan {
            country_code: None,
            national_prefix: "0".into(),
            international_prefix: "00".into(),
            send: NumberFormat::E164,
        }
    }
}

/// `text` without the separators people write in numbers (spaces, `-`, `.`, brackets), if
/// what is left is a telephone number: digits, optionally after one `+`.
pub fn digits_of(text: &str) -> Option<String> {
    let kept: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = kept.strip_prefix('+').unwrap_or(&kept);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(kept)
}

impl NumberPlan {
    /// A number as this carrier writes it, in the inside form: E.164 with `+` when it can
    /// be told (`+…`, the international prefix, or the national prefix with a country
    /// code); otherwise as it came, without separators (a short code, an extension). Text
    /// that is not a number comes back unchanged.
    pub fn to_e164(&self, number: &str) -> String {
        let Some(n) = digits_of(number) else {
            return number.to_string();
        };
        if n.starts_with('+') {
            return n;
        }
        let intl = &self.international_prefix;
        if !intl.is_empty() && n.len() > intl.len() && n.starts_with(intl.as_str()) {
            return format!("+{}", &n[intl.len()..]);
        }
        let national = &self.national_prefix;
        if let Some(cc) = &self.country_code {
            if !national.is_empty() && n.len() > national.len() && n.starts_with(national.as_str())
            {
                return format!("+{cc}{}", &n[national.len()..]);
            }
        }
        n
    }

    /// A number in the inside form as this carrier wants it (see [`NumberFormat`]). One
    /// without `+` (a short code) goes as it is.
    pub fn format(&self, number: &str) -> String {
        let Some(rest) = number.strip_prefix('+') else {
            return number.to_string();
        };
        let intl = &self.international_prefix;
        match self.send {
            NumberFormat::E164 => number.to_string(),
            NumberFormat::International => format!("{intl}{rest}"),
            NumberFormat::National => match &self.country_code {
                Some(cc) if rest.starts_with(cc.as_str()) => {
                    format!("{}{}", self.national_prefix, &rest[cc.len()..])
                }
                _ => format!("{intl}{rest}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uk(send: NumberFormat) -> NumberPlan {
        NumberPlan {
            country_code: Some("44".into()),
            send,
            ..NumberPlan::default()
        }
    }

    #[test]
    fn every_way_of_writing_a_number_reads_as_one() {
        let p = uk(NumberFormat::E164);
        for written in [
            "+441632960000",
            "+44 1632 960000",
            "01632 960000",
            "01632-960000",
            "(01632) 960000",
            "00441632960000",
            "0044 1632 960.000",
        ] {
            assert_eq!(p.to_e164(written), "+441632960000", "{written}");
        }
        // Another country's number, internationally.
        assert_eq!(p.to_e164("0033 1 23 45 67 89"), "+33123456789");
        // Short codes and extensions stay; names are not numbers.
        assert_eq!(p.to_e164("999"), "999");
        assert_eq!(p.to_e164("1001"), "1001");
        assert_eq!(p.to_e164("alice"), "alice");
        assert_eq!(p.to_e164("+"), "+");
        assert_eq!(p.to_e164("0"), "0", "a prefix alone is not a number");
    }

    #[test]
    fn without_a_country_national_numbers_cannot_be_told() {
        let p = NumberPlan::default();
        assert_eq!(p.to_e164("01632960000"), "01632960000");
        assert_eq!(p.to_e164("00441632960000"), "+441632960000");
        let north_america = NumberPlan {
            country_code: Some("1".into()),
            national_prefix: "1".into(),
            international_prefix: "011".into(),
            send: NumberFormat::National,
        };
        assert_eq!(north_america.to_e164("1 202 555 0100"), "+12025550100");
        assert_eq!(north_america.to_e164("011 44 1632 960000"), "+441632960000");
        assert_eq!(north_america.format("+12025550100"), "12025550100");
        assert_eq!(north_america.format("+441632960000"), "011441632960000");
    }

    #[test]
    fn numbers_leave_as_the_carrier_wants_them() {
        let n = "+441632960000";
        assert_eq!(uk(NumberFormat::E164).format(n), "+441632960000");
        assert_eq!(uk(NumberFormat::National).format(n), "01632960000");
        assert_eq!(uk(NumberFormat::International).format(n), "00441632960000");
        // Abroad, a national carrier still needs the international form.
        assert_eq!(
            uk(NumberFormat::National).format("+33123456789"),
            "0033123456789"
        );
        // Short codes go as they are.
        assert_eq!(uk(NumberFormat::National).format("999"), "999");
    }

    #[test]
    fn reading_what_was_written_gives_the_number_back() {
        for send in [
            NumberFormat::E164,
            NumberFormat::National,
            NumberFormat::International,
        ] {
            let p = uk(send);
            for n in ["+441632960000", "+33123456789", "+12025550100", "999"] {
                assert_eq!(p.to_e164(&p.format(n)), n, "{send:?} {n}");
            }
        }
    }
}
