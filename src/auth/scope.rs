//! SMART scopes: `system/Bundle.c`, `system/*.rs` (v2) and `system/Bundle.read` (v1).

use std::fmt;

/// One permission letter of SMART v2 scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }
}

/// A parsed `system/...` scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    raw: String,
    resource: String,
    permissions: Vec<char>,
}

impl Scope {
    /// Parses a system scope; anything else (patient/user scopes, junk) is refused.
    pub fn parse(raw: &str) -> Option<Scope> {
        let rest = raw.strip_prefix("system/")?;
        let (resource, perms) = rest.split_once('.')?;
        let valid_resource = resource == "*"
            || (!resource.is_empty()
                && resource
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '$' || c == '-'));
        if !valid_resource {
            return None;
        }
        let permissions: Vec<char> = match perms {
            "read" => vec!['r', 's'],
            "write" => vec!['c', 'u', 'd'],
            "*" => vec!['c', 'r', 'u', 'd', 's'],
            v2 => {
                // SMART v2: a non-empty subsequence of "cruds", in that order.
                let order = "cruds";
                let mut last = None;
                for ch in v2.chars() {
                    let pos = order.find(ch)?;
                    if last.is_some_and(|l| pos <= l) {
                        return None;
                    }
                    last = Some(pos);
                }
                if v2.is_empty() {
                    return None;
                }
                v2.chars().collect()
            }
        };
        Some(Scope {
            raw: raw.to_string(),
            resource: resource.to_string(),
            permissions,
        })
    }

    /// Whether this scope grants `permission` on `resource`.
    pub fn grants(&self, resource: &str, permission: Permission) -> bool {
        (self.resource == "*" || self.resource == resource)
            && self.permissions.contains(&permission.letter())
    }

    /// Whether everything this scope grants is granted by `other` (used to cap requests).
    pub fn within(&self, other: &Scope) -> bool {
        (other.resource == "*" || other.resource == self.resource)
            && self
                .permissions
                .iter()
                .all(|p| other.permissions.contains(p))
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_scopes_grant_their_letters_only() {
        let s = Scope::parse("system/Bundle.cr").unwrap();
        assert!(s.grants("Bundle", Permission::Create));
        assert!(s.grants("Bundle", Permission::Read));
        assert!(!s.grants("Bundle", Permission::Search));
        assert!(!s.grants("Task", Permission::Read));
        assert!(
            Scope::parse("system/*.rs")
                .unwrap()
                .grants("Task", Permission::Search)
        );
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in [
            "patient/Bundle.r",
            "system/Bundle.rc",
            "system/Bundle.",
            "system/.r",
            "system/Bundle.x",
            "openid",
        ] {
            assert!(Scope::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn v1_scopes_map_to_v2_letters() {
        let s = Scope::parse("system/Bundle.read").unwrap();
        assert!(s.grants("Bundle", Permission::Read) && s.grants("Bundle", Permission::Search));
        assert!(!s.grants("Bundle", Permission::Create));
    }

    #[test]
    fn a_request_is_within_an_allowed_scope() {
        let allowed = Scope::parse("system/*.rs").unwrap();
        assert!(Scope::parse("system/Task.r").unwrap().within(&allowed));
        assert!(!Scope::parse("system/Task.c").unwrap().within(&allowed));
    }
}
