//! What free text a caller gives us (reasons, actors) may hold: no control
//! characters and no Unicode format characters (general category `Cf`:
//! bidi overrides such as U+202E, zero-width characters, the BOM, tags),
//! which would let one row's text reorder or hide what a statement shows.

/// Unicode's `Cf` characters (Unicode 16.0), as inclusive ranges.
const FORMAT_CHARACTERS: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `c` is a Unicode format character (`Cf`).
pub fn is_format(c: char) -> bool {
    FORMAT_CHARACTERS
        .iter()
        .any(|(first, last)| (*first..=*last).contains(&c))
}

/// Whether `c` may not appear in a caller's free text: a control or a
/// format character.
pub fn is_hidden(c: char) -> bool {
    c.is_control() || is_format(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_zero_width_and_tag_characters_are_format_characters() {
        for c in [
            '\u{202E}',
            '\u{2066}',
            '\u{200B}',
            '\u{200D}',
            '\u{FEFF}',
            '\u{E0041}',
            '\u{00AD}',
        ] {
            assert!(is_format(c) && is_hidden(c), "U+{:04X}", c as u32);
        }
        for c in ['\0', '\n', '\u{7F}', '\u{9F}'] {
            assert!(!is_format(c) && is_hidden(c), "U+{:04X}", c as u32);
        }
        for c in ['a', ' ', 'é', '€', '中', '😀', '\u{200A}', '\u{2028}'] {
            assert!(!is_hidden(c), "U+{:04X}", c as u32);
        }
    }
}
