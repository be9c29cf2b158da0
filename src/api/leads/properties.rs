//! Property tests of the CSV import's per-row step (pure: a record read, the header's columns
//! applied, the values validated): any row of any width, with its columns in any order and any
//! default country, becomes a lead ready to store or a refusal naming its field with a stable
//! code, never a panic.

use proptest::prelude::*;

use super::*;

/// Cells as people fill them in, now and then anything at all.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[A-Z][a-z]{1,10}( [A-Z][a-z']{1,12})?",
        1 => any::<String>(),
        1 => ".{1990,2010}",
        1 => Just("  ".to_owned()),
    ]
}

fn phone() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[+][1-9][0-9]{7,13}",
        1 => "00[1-9][0-9]{7,12}",
        2 => "0?[1-9][0-9 ().-]{8,14}",
        1 => any::<String>(),
    ]
}

fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z.]{1,10}@[a-z]{1,8}[.][a-z]{2,3}",
        1 => any::<String>(),
        1 => Just(String::new()),
    ]
}

fn timezone() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()).prop_map(|tz| tz.name().to_owned()),
        1 => prop::sample::select(&["Mars/Olympus", "utc", " ", "Europe/"][..]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn free_text() -> impl Strategy<Value = String> {
    prop_oneof![4 => any::<String>(), 1 => ".{1990,2010}"]
}

/// A row and the header's layout: the known columns (the optional ones present or not) and
/// three extra ones in any order, and a record that may be cut short.
#[derive(Debug, Clone)]
struct Row {
    positions: Vec<usize>,
    present: [bool; 3],
    extra_names: Vec<String>,
    cells: [String; 8],
    width: usize,
}

fn row() -> impl Strategy<Value = Row> {
    (
        Just((0..8).collect::<Vec<usize>>()).prop_shuffle(),
        any::<[bool; 3]>(),
        prop::collection::vec("[a-z_]{1,12}", 3),
        (
            name(),
            phone(),
            email(),
            timezone(),
            free_text(),
            free_text(),
            free_text(),
            free_text(),
        ),
        prop_oneof![9 => Just(8usize), 1 => 0..8usize],
    )
        .prop_map(|(positions, present, extra_names, values, width)| {
            let (name, phone, email, timezone, notes, first, second, third) = values;
            let values = [name, phone, email, timezone, notes, first, second, third];
            let mut cells: [String; 8] = Default::default();
            for (value, &position) in values.into_iter().zip(&positions) {
                cells[position] = value;
            }
            Row {
                positions,
                present,
                extra_names,
                cells,
                width,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn any_row_is_a_valid_lead_or_a_refusal_naming_its_field(
        row in row(),
        country in proptest::option::of("[+]?[0-9]{0,4}"),
    ) {
        let country = country.as_deref().and_then(CountryCode::parse);
        let optional = |index: usize| row.present[index - 2].then_some(row.positions[index]);
        let columns = Columns {
            name: row.positions[0],
            phone: row.positions[1],
            email: optional(2),
            timezone: optional(3),
            notes: optional(4),
            extra: (5..8).map(|index| (row.positions[index], row.extra_names[index - 5].clone())).collect(),
        };
        let record = StringRecord::from(row.cells[..row.width].to_vec());
        match validate(columns.raw(&record), country.as_ref()) {
            Ok(lead) => {
                prop_assert!(!lead.name.is_empty() && lead.name.trim() == lead.name);
                prop_assert!(lead.name.chars().count() <= MAX_FIELD_CHARS);
                prop_assert_eq!(E164::parse_strict(&lead.phone).map(E164::into_string), Ok(lead.phone.clone()));
                if let Some(email) = &lead.email {
                    prop_assert!(email.len() <= 254 && email.contains('@'));
                }
                if let Some(zone) = &lead.timezone {
                    prop_assert!(zone.parse::<chrono_tz::Tz>().is_ok());
                }
                if let Some(notes) = &lead.notes {
                    prop_assert!(!notes.is_empty() && notes.chars().count() <= MAX_FIELD_CHARS);
                }
                if let Some(metadata) = &lead.metadata {
                    let metadata = metadata.as_object().expect("an object");
                    prop_assert!(!metadata.is_empty());
                    for value in metadata.values() {
                        let value = value.as_str().expect("a string");
                        prop_assert!(!value.is_empty() && value.chars().count() <= MAX_FIELD_CHARS);
                    }
                }
            }
            Err((field, code, message)) => {
                prop_assert!(["name", "phone", "email", "timezone"].contains(&field), "{}", field);
                prop_assert!(code.starts_with(field), "{} {}", field, code);
                prop_assert!(!message.is_empty());
            }
        }
    }
}
