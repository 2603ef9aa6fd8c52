//! The roles a key may hold, and what a route needs of its caller.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A role a key may hold. `viewer ⊂ operator ⊂ admin`; `worker` stands apart.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Worker => "worker",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            "worker" => Ok(Role::Worker),
            other => Err(format!(
                "unknown role {other:?} (expected viewer, operator, admin or worker)"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// viewer, operator or admin.
    Viewer,
    /// operator or admin.
    Operator,
    /// admin only.
    Admin,
    /// worker routes: worker, operator or admin.
    Worker,
}

impl Need {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Need::Viewer => matches!(role, Role::Viewer | Role::Operator | Role::Admin),
            Need::Operator => matches!(role, Role::Operator | Role::Admin),
            Need::Admin => role == Role::Admin,
            Need::Worker => matches!(role, Role::Worker | Role::Operator | Role::Admin),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Need::Viewer => "viewer",
            Need::Operator => "operator",
            Need::Admin => "admin",
            Need::Worker => "worker",
        }
    }
}
