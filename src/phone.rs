//! Phone numbers as E.164 (`+` and 7 to 15 digits, no leading zero), from what people type.
//!
//! Pure: no I/O. The rule for a number without an international prefix is explicit, never
//! guessed: it needs a default country calling code (the API takes it from the request or the
//! organization's `settings.default_country_code`); without one it is refused.
//!
//! Accepted spellings: `+44 20 7946 0958`, `0044 20 7946 0958`, and with default code `44`,
//! `020 7946 0958` (one national trunk `0` is dropped). With default code `1`, `(415) 555-0100`
//! and `1 415 555 0100` (the NANP trunk `1` is dropped). Spaces, dashes, dots, slashes and
//! parentheses are ignored; anything else (letters, extensions) is refused.
//!
//! A number is personal data: logs show it only through [`Redacted`] (`…0100`), never whole.

use std::fmt::{self, Write as _};

/// A number in E.164, `+` then 7 to 15 digits, the first not zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

/// Why a number was refused; each has a stable code for API errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is empty")]
    Empty,
    #[error("the phone number has characters other than digits, spaces and - . / ( )")]
    InvalidCharacters,
    #[error(
        "the phone number has no country code: write it with + (or 00), or give a default country code"
    )]
    NoCountryCode,
    #[error("the phone number is too short for E.164")]
    TooShort,
    #[error("the phone number is longer than E.164's 15 digits")]
    TooLong,
    #[error("a country code cannot start with 0")]
    ZeroCountryCode,
    #[error("a North American number has 10 digits after +1")]
    InvalidNanp,
}

/// A phone number as logs may show it: its last four digits (`…0100`), enough to tell calls
/// apart, too few to dial anyone. Nothing else of the text is shown (a SIP address or a name
/// in a `From` field stays out too), and a text of fewer than 7 digits (shorter than any E.164
/// number) shows none. `Debug` prints the same, so a `?field` cannot leak it either.
#[derive(Clone, Copy)]
pub struct Redacted<'a>(pub &'a str);

/// Digits of a number that [`Redacted`] shows.
const SHOWN_DIGITS: usize = 4;

/// A default country calling code (`1`, `44`, `351`...), 1 to 3 digits, not starting with 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryCode(String);

const MIN_DIGITS: usize = 7;
const MAX_DIGITS: usize = 15;

impl PhoneError {
    /// The stable code an API error carries.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Empty => "phone_empty",
            Self::InvalidCharacters => "phone_invalid_characters",
            Self::NoCountryCode => "phone_no_country_code",
            Self::TooShort => "phone_too_short",
            Self::TooLong => "phone_too_long",
            Self::ZeroCountryCode => "phone_invalid_country_code",
            Self::InvalidNanp => "phone_invalid_nanp",
        }
    }
}

impl CountryCode {
    /// `"44"` or `"+44"`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.trim().trim_start_matches('+');
        let valid = (1..=3).contains(&digits.len())
            && digits.bytes().all(|byte| byte.is_ascii_digit())
            && !digits.starts_with('0');
        valid.then(|| Self(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl E164 {
    /// Normalises `raw`; `default_country` applies only to numbers without `+` or `00`.
    pub fn normalize(raw: &str, default_country: Option<&CountryCode>) -> Result<Self, PhoneError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let (international, rest) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len() + 3);
        for character in rest.chars() {
            match character {
                '0'..='9' => digits.push(character),
                ' ' | '-' | '.' | '/' | '(' | ')' | '\u{a0}' => {}
                _ => return Err(PhoneError::InvalidCharacters),
            }
        }
        if digits.is_empty() {
            return Err(PhoneError::Empty);
        }
        let full = if international {
            digits
        } else if let Some(international) = digits.strip_prefix("00") {
            international.to_owned()
        } else {
            let Some(country) = default_country else {
                return Err(PhoneError::NoCountryCode);
            };
            let national = match country.as_str() {
                // NANP has no trunk 0, but people write the country code without the plus.
                "1" if digits.len() == 11 && digits.starts_with('1') => &digits[1..],
                _ => digits.strip_prefix('0').unwrap_or(&digits),
            };
            format!("{}{national}", country.as_str())
        };
        Self::check(full)
    }

    /// A stored number that must already be E.164 (`+` and digits only).
    pub fn parse_strict(raw: &str) -> Result<Self, PhoneError> {
        let Some(digits) = raw.strip_prefix('+') else {
            return Err(PhoneError::NoCountryCode);
        };
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(PhoneError::InvalidCharacters);
        }
        Self::check(digits.to_owned())
    }

    fn check(digits: String) -> Result<Self, PhoneError> {
        if digits.starts_with('0') {
            return Err(PhoneError::ZeroCountryCode);
        }
        if digits.len() < MIN_DIGITS {
            return Err(PhoneError::TooShort);
        }
        if digits.len() > MAX_DIGITS {
            return Err(PhoneError::TooLong);
        }
        if digits.starts_with('1') && digits.len() != 11 {
            return Err(PhoneError::InvalidNanp);
        }
        Ok(Self(format!("+{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The number as logs may show it.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(&self.0)
    }
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("…")?;
        let digits = self.0.bytes().filter(u8::is_ascii_digit).count();
        if digits < MIN_DIGITS {
            return Ok(());
        }
        let last = self
            .0
            .bytes()
            .filter(u8::is_ascii_digit)
            .skip(digits - SHOWN_DIGITS)
            .map(char::from);
        for digit in last {
            formatter.write_char(digit)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(raw: &str, country: Option<&str>, expected: Result<&str, PhoneError>) {
        let country = country.map(|code| CountryCode::parse(code).expect("a valid code"));
        let got = E164::normalize(raw, country.as_ref());
        assert_eq!(
            got.as_ref().map(E164::as_str).map_err(|error| *error),
            expected,
            "{raw:?} with {country:?}"
        );
    }

    #[test]
    fn international_spellings() {
        check("+44 20 7946 0958", None, Ok("+442079460958"));
        check("0044 (20) 7946-0958", None, Ok("+442079460958"));
        check("+1 (415) 555-0100", None, Ok("+14155550100"));
        check("+351.912.345.678", Some("44"), Ok("+351912345678"));
        check(" +49/30/123456 ", None, Ok("+4930123456"));
    }

    #[test]
    fn national_numbers_need_a_default_country() {
        check("020 7946 0958", None, Err(PhoneError::NoCountryCode));
        check("020 7946 0958", Some("44"), Ok("+442079460958"));
        check("(415) 555-0100", Some("+1"), Ok("+14155550100"));
        check("1 415 555 0100", Some("1"), Ok("+14155550100"));
        check("0612345678", Some("33"), Ok("+33612345678"));
    }

    #[test]
    fn refusals() {
        check("", None, Err(PhoneError::Empty));
        check("  + ", None, Err(PhoneError::Empty));
        check(
            "+44 20 7946 0958 ext 12",
            None,
            Err(PhoneError::InvalidCharacters),
        );
        check("call me", Some("1"), Err(PhoneError::InvalidCharacters));
        check("+44123", None, Err(PhoneError::TooShort));
        check("+4412345678901234", None, Err(PhoneError::TooLong));
        check("+0441234567", None, Err(PhoneError::ZeroCountryCode));
        check("+1415555010", None, Err(PhoneError::InvalidNanp));
        check("555 0100", Some("1"), Err(PhoneError::InvalidNanp));
    }

    #[test]
    fn redacted_numbers_show_their_last_four_digits_only() {
        let shown = |raw: &str| Redacted(raw).to_string();
        assert_eq!(shown("+14155550100"), "…0100");
        assert_eq!(shown("14155550100"), "…0100");
        assert_eq!(shown("+44 20 7946-0958"), "…0958");
        assert_eq!(format!("{:?}", Redacted("+14155550100")), "…0100");
        assert_eq!(
            E164::parse_strict("+4930123456")
                .unwrap()
                .redacted()
                .to_string(),
            "…3456"
        );
        // Too short to be a number, or no number at all: nothing of it.
        assert_eq!(shown("555010"), "…");
        assert_eq!(shown(""), "…");
        assert_eq!(shown("sip:jane.doe@example.com"), "…");
        assert_eq!(shown("sip:+14155550100@example.com"), "…0100");
    }

    #[test]
    fn country_codes_and_strict_parsing() {
        assert!(CountryCode::parse("0").is_none());
        assert!(CountryCode::parse("1234").is_none());
        assert!(CountryCode::parse("x1").is_none());
        assert_eq!(CountryCode::parse("+351").unwrap().as_str(), "351");
        assert_eq!(
            E164::parse_strict("+14155550100").unwrap().as_str(),
            "+14155550100"
        );
        assert_eq!(
            E164::parse_strict("14155550100"),
            Err(PhoneError::NoCountryCode)
        );
        assert_eq!(
            E164::parse_strict("+1 415 555 0100"),
            Err(PhoneError::InvalidCharacters)
        );
    }
}
