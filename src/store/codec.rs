//! The one place records are turned into bytes and back.
//!
//! Every stored value is `[format version byte] ++ bincode(standard config)`. A record
//! type names its current version; reading a record written with another version either
//! goes through that type's `migrate` or is refused with an error that says what was
//! found — never reinterpreted as the current layout. Swapping the codec means changing
//! this file only.
//!
//! bincode's serde mode cannot carry `serde_json::Value`, internally tagged enums or
//! `skip_serializing_if`: records keep JSON payloads as JSON text.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type stored in the store.
pub trait Record: Serialize + DeserializeOwned {
    /// Name used in error messages (`"job"`, `"audit event"`).
    const NAME: &'static str;
    /// The layout written today. Bump it when the struct changes and teach `migrate` the
    /// old one.
    const VERSION: u8;

    /// Read a record written with an older `version` (the body after the version
    /// byte). The default refuses: a type that changed layout must say how to read the
    /// old one.
    fn migrate(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        let _ = body;
        Err(CodecError::UnknownVersion {
            record: Self::NAME,
            found: version,
            expected: Self::VERSION,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {record}: {source}")]
    Encode {
        record: &'static str,
        source: bincode::error::EncodeError,
    },
    #[error("cannot decode {record} (format version {version}): {source}")]
    Decode {
        record: &'static str,
        version: u8,
        source: bincode::error::DecodeError,
    },
    #[error(
        "{record} record has format version {found}, this binary reads version {expected}: \
         refusing to guess its layout (restore with the matching binary or migrate)"
    )]
    UnknownVersion {
        record: &'static str,
        found: u8,
        expected: u8,
    },
    #[error("{record} record is empty")]
    Empty { record: &'static str },
    #[error("{record} record has {extra} trailing bytes")]
    Trailing { record: &'static str, extra: usize },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encode a record with its current version byte.
pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![T::VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|source| {
        CodecError::Encode {
            record: T::NAME,
            source,
        }
    })?;
    Ok(out)
}

/// Decode a record body written with the current layout (no version byte).
pub fn decode_body<T: DeserializeOwned>(
    record: &'static str,
    version: u8,
    body: &[u8],
) -> Result<T, CodecError> {
    let (value, used) =
        bincode::serde::decode_from_slice::<T, _>(body, config()).map_err(|source| {
            CodecError::Decode {
                record,
                version,
                source,
            }
        })?;
    if used != body.len() {
        return Err(CodecError::Trailing {
            record,
            extra: body.len() - used,
        });
    }
    Ok(value)
}

/// Decode a record, migrating older versions through `T::migrate`.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or(CodecError::Empty { record: T::NAME })?;
    if version == T::VERSION {
        decode_body(T::NAME, version, body)
    } else {
        T::migrate(version, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Version 1 of a record.
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct NoteV1 {
        text: String,
    }
    impl Record for NoteV1 {
        const NAME: &'static str = "note";
        const VERSION: u8 = 1;
    }

    /// Version 2 added a field; it knows how to read version 1.
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct NoteV2 {
        text: String,
        pinned: bool,
    }
    impl Record for NoteV2 {
        const NAME: &'static str = "note";
        const VERSION: u8 = 2;
        fn migrate(version: u8, body: &[u8]) -> Result<Self, CodecError> {
            match version {
                1 => {
                    let old: NoteV1 = decode_body(Self::NAME, version, body)?;
                    Ok(NoteV2 {
                        text: old.text,
                        pinned: false,
                    })
                }
                found => Err(CodecError::UnknownVersion {
                    record: Self::NAME,
                    found,
                    expected: Self::VERSION,
                }),
            }
        }
    }

    /// Version 3 changed layout and chose not to read older versions.
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct NoteV3 {
        pinned: bool,
        text: String,
    }
    impl Record for NoteV3 {
        const NAME: &'static str = "note";
        const VERSION: u8 = 3;
    }

    #[test]
    fn round_trip_carries_version_byte() {
        let n = NoteV2 {
            text: "hi".into(),
            pinned: true,
        };
        let bytes = encode(&n).unwrap();
        assert_eq!(bytes[0], 2);
        assert_eq!(decode::<NoteV2>(&bytes).unwrap(), n);
    }

    #[test]
    fn old_version_is_migrated() {
        let bytes = encode(&NoteV1 { text: "old".into() }).unwrap();
        let n: NoteV2 = decode(&bytes).unwrap();
        assert_eq!(
            n,
            NoteV2 {
                text: "old".into(),
                pinned: false
            }
        );
    }

    #[test]
    fn unknown_version_is_refused_not_misread() {
        // Version 2 bytes would decode "successfully" as garbage under V3's layout
        // if the version byte were ignored; the codec must refuse instead.
        let bytes = encode(&NoteV2 {
            text: "x".into(),
            pinned: true,
        })
        .unwrap();
        let err = decode::<NoteV3>(&bytes).unwrap_err();
        assert!(matches!(
            err,
            CodecError::UnknownVersion {
                found: 2,
                expected: 3,
                ..
            }
        ));
        assert!(err.to_string().contains("format version 2"));
        // A record from a newer binary is refused too.
        let newer = encode(&NoteV3 {
            pinned: false,
            text: "n".into(),
        })
        .unwrap();
        assert!(decode::<NoteV2>(&newer).is_err());
    }

    #[test]
    fn truncated_and_empty_records_are_errors() {
        let bytes = encode(&NoteV2 {
            text: "hello".into(),
            pinned: true,
        })
        .unwrap();
        assert!(decode::<NoteV2>(&bytes[..bytes.len() - 2]).is_err());
        assert!(matches!(
            decode::<NoteV2>(&[]),
            Err(CodecError::Empty { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            decode::<NoteV2>(&long),
            Err(CodecError::Trailing { .. })
        ));
    }
}
