//! Property tests of phone numbers: any text with any default country normalises to a valid
//! E.164 number or a typed [`PhoneError`], never a panic; what it gives is stable; a redacted
//! number never shows more than its last four digits.

use proptest::prelude::*;

use super::*;

/// What people type in a phone column, and anything at all.
fn typed() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[+]?(00)?[0-9 ().\u{a0}/-]{0,24}",
        "[+0-9 ()a-z#*]{0,20}",
        "[+]?[0-9]{0,20}",
    ]
}

fn country() -> impl Strategy<Value = Option<CountryCode>> {
    proptest::option::of("[+]?[0-9]{0,4}")
        .prop_map(|text| text.as_deref().and_then(CountryCode::parse))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn any_text_normalises_to_e164_or_a_typed_error(raw in typed(), country in country()) {
        match E164::normalize(&raw, country.as_ref()) {
            Ok(number) => {
                let digits = &number.as_str()[1..];
                prop_assert!(number.as_str().starts_with('+'));
                prop_assert!(digits.bytes().all(|byte| byte.is_ascii_digit()));
                prop_assert!((MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()));
                prop_assert!(!digits.starts_with('0'));
                // Stable: the stored form reads back as itself, whatever the default.
                prop_assert_eq!(E164::parse_strict(number.as_str()), Ok(number.clone()));
                prop_assert_eq!(E164::normalize(number.as_str(), country.as_ref()), Ok(number.clone()));
            }
            Err(error) => prop_assert!(error.code().starts_with("phone_")),
        }
        let _ = E164::parse_strict(&raw);
    }

    #[test]
    fn a_redacted_number_shows_at_most_its_last_four_digits(raw in typed()) {
        let shown = Redacted(&raw).to_string();
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        let tail: String = shown.chars().skip(1).collect();
        prop_assert!(shown.starts_with('…'));
        prop_assert!(tail.len() <= SHOWN_DIGITS);
        prop_assert!(tail.chars().all(|character| character.is_ascii_digit()));
        prop_assert!(digits.ends_with(&tail));
        prop_assert_eq!(format!("{:?}", Redacted(&raw)), shown);
    }
}
