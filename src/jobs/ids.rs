//! Names checked once, at the edge: a [`JobId`] is a UUID, a [`QueueName`] or a
//! [`JobKind`] is 1–64 of `A-Z a-z 0-9 . _ : -` (they are parts of index keys). Each
//! deserializes through its check, so a typed request body cannot hold a bad one.

use serde::{Deserialize, Serialize};

use super::JobError;

/// What names of queues and kinds may contain, for error messages.
pub const NAME_RULE: &str = "must be 1-64 characters of letters, digits, '.', '_', ':' or '-'";

/// Is `v` a valid queue or kind name?
pub fn is_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A job's id: a UUID (v7, so ids sort by creation), in its hyphenated form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// An id that is not a UUID names no job: `NotFound`, as for an unknown one.
    pub fn parse(s: &str) -> Result<JobId, JobError> {
        uuid::Uuid::parse_str(s)
            .map(|u| JobId(u.hyphenated().to_string()))
            .map_err(|_| JobError::NotFound(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<$name, String> {
                if is_name(s) {
                    Ok($name(s.to_string()))
                } else {
                    Err(NAME_RULE.to_string())
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<$name, String> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }
    };
}

name_type!(
    /// The queue a job waits in.
    QueueName
);
name_type!(
    /// What a job does; workers claim by kind.
    JobKind
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        assert!(QueueName::parse("emails.high-1:x_y").is_ok());
        assert!(QueueName::parse("").is_err());
        assert!(JobKind::parse("a b").is_err());
        assert!(JobKind::parse(&"k".repeat(65)).is_err());
        let e: Result<QueueName, _> = serde_json::from_str(r#""a/b""#);
        assert!(e.unwrap_err().to_string().contains("must be 1-64"));
        assert!(matches!(JobId::parse("nope"), Err(JobError::NotFound(_))));
        let id = JobId::parse("0190F0F0-0000-7000-8000-000000000000").unwrap();
        assert_eq!(id.as_str(), "0190f0f0-0000-7000-8000-000000000000");
    }
}
