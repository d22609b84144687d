use std::fmt;

use super::InvalidInput;

/// The paying user: the `sub` of a verified Firebase ID token (1 to 128 chars).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let chars = raw.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS {
            return Err(InvalidInput(format!(
                "user_id must be 1 to {} characters, got {chars}",
                Self::MAX_CHARS
            )));
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidInput(
                "user_id must not contain control characters".into(),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A caller's idempotency key: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdempotencyKey(String);

impl ClientIdempotencyKey {
    pub const MAX_LEN: usize = 255;

    /// An empty key means "no key"; anything else must be valid.
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, InvalidInput> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() > Self::MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidInput(format!(
                "idempotency_key must be 1 to {} visible ASCII characters",
                Self::MAX_LEN
            )));
        }
        Ok(Some(Self(raw.to_owned())))
    }

    /// A key that must be there (spends, adjustments).
    pub fn parse_required(raw: &str) -> Result<Self, InvalidInput> {
        Self::parse_optional(raw)?.ok_or_else(|| InvalidInput("idempotency_key is required".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why credits moved, in the caller's words: at most 200 characters, no
/// control or format characters ([`crate::text`]). Empty means none was given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reason(Option<String>);

impl Reason {
    pub const MAX_CHARS: usize = 200;

    pub fn parse_optional(raw: &str) -> Result<Self, InvalidInput> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(InvalidInput(format!(
                "reason must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if raw.chars().any(crate::text::is_hidden) {
            return Err(InvalidInput(
                "reason must not contain control or format characters (such as U+202E)".into(),
            ));
        }
        Ok(Self((!raw.is_empty()).then(|| raw.to_owned())))
    }

    /// A reason that must be given (adjustments).
    pub fn parse_required(raw: &str) -> Result<Self, InvalidInput> {
        let reason = Self::parse_optional(raw)?;
        if reason.0.is_none() {
            return Err(InvalidInput("reason is required".into()));
        }
        Ok(reason)
    }

    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Who made an adjustment (an operator's name or email): 1 to 128
/// characters, no control or format characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor(String);

impl Actor {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let chars = raw.chars().count();
        if chars == 0 || chars > Self::MAX_CHARS || raw.chars().any(crate::text::is_hidden) {
            return Err(InvalidInput(format!(
                "actor must be 1 to {} characters without control or format characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_one_to_128_chars_without_control_characters() {
        assert!(UserId::parse("uid-123").is_ok());
        assert!(UserId::parse(&"é".repeat(128)).is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
        assert!(UserId::parse("a\nb").is_err());
        assert!(UserId::parse("a\0b").is_err());
    }

    #[test]
    fn idempotency_keys_are_optional_visible_ascii() {
        assert_eq!(ClientIdempotencyKey::parse_optional("").unwrap(), None);
        let key = ClientIdempotencyKey::parse_optional("order-42")
            .unwrap()
            .unwrap();
        assert_eq!(key.as_str(), "order-42");
        assert!(ClientIdempotencyKey::parse_optional(&"k".repeat(255)).is_ok());
        for bad in ["has space", "tab\t", "ünïcode", &"k".repeat(256)] {
            assert!(
                ClientIdempotencyKey::parse_optional(bad).is_err(),
                "{bad:?}"
            );
            assert!(
                ClientIdempotencyKey::parse_required(bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(ClientIdempotencyKey::parse_required("").is_err());
        assert_eq!(
            ClientIdempotencyKey::parse_required("k").unwrap().as_str(),
            "k"
        );
    }

    #[test]
    fn reasons_are_at_most_200_chars_without_control_or_format_characters() {
        assert_eq!(Reason::parse_optional("").unwrap().as_deref(), None);
        assert_eq!(
            Reason::parse_optional("render job 7").unwrap().as_deref(),
            Some("render job 7")
        );
        assert!(Reason::parse_optional(&"é".repeat(200)).is_ok());
        assert!(Reason::parse_optional("café ☕ 中文 😀").is_ok());
        for bad in [
            "line\nbreak",
            "nul\0",
            &"r".repeat(201),
            "refund \u{202E}001$",
            "zero\u{200B}width",
            "\u{FEFF}bom",
        ] {
            assert!(Reason::parse_optional(bad).is_err(), "{bad:?}");
            assert!(Reason::parse_required(bad).is_err(), "{bad:?}");
        }
        assert!(Reason::parse_required("").is_err());
        assert!(Reason::parse_required("goodwill").is_ok());
    }

    #[test]
    fn actors_are_one_to_128_chars_without_control_or_format_characters() {
        assert_eq!(
            Actor::parse("ops@example.com").unwrap().as_str(),
            "ops@example.com"
        );
        assert!(Actor::parse(&"é".repeat(128)).is_ok());
        for bad in ["", "tab\there", &"a".repeat(129), "ops\u{202E}moc.elpmaxe@"] {
            assert!(Actor::parse(bad).is_err(), "{bad:?}");
        }
    }
}
