//! Who made a request (for the history) and which instances they may reach (for routing).

use super::model::KeyScope;
use crate::db::history::Actor;
use crate::error::{Error, Result};
use std::net::IpAddr;

/// An authenticated request's caller; handlers get it as `Extension<Caller>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who it is, for the history.
    pub actor: Actor,
    scope: KeyScope,
}

impl Caller {
    /// A caller that may reach every instance.
    pub fn unrestricted(actor: Actor) -> Self {
        Caller {
            actor,
            scope: KeyScope::All,
        }
    }

    /// A caller limited to `scope`.
    pub fn scoped(actor: Actor, scope: KeyScope) -> Self {
        Caller { actor, scope }
    }

    /// Anyone, when auth is off.
    pub fn anonymous(addr: Option<IpAddr>) -> Self {
        Caller::unrestricted(Actor {
            addr,
            ..Actor::named("anonymous")
        })
    }

    /// True if this caller may use the instance.
    pub fn may_use(&self, instance: &str) -> bool {
        self.scope.allows(instance)
    }

    /// 403 unless this caller may use the instance. Call it before looking the instance up, so a
    /// limited key cannot learn which other instances exist.
    pub fn ensure_instance(&self, instance: &str) -> Result<()> {
        if self.may_use(instance) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this API key may not use instance '{instance}'"
            )))
        }
    }

    /// Keeps only the items (e.g. `/v1/models` entries) whose instance this caller may use.
    pub fn retain_allowed<T>(&self, items: &mut Vec<T>, instance_of: impl Fn(&T) -> &str) {
        items.retain(|item| self.may_use(instance_of(item)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_scoped_caller_reaches_only_its_instances() {
        let only = KeyScope::Only(Arc::new(["a".to_string()].into_iter().collect()));
        let caller = Caller::scoped(Actor::named("k"), only);
        assert!(caller.ensure_instance("a").is_ok());
        let err = caller.ensure_instance("b").unwrap_err();
        assert_eq!(err.status().as_u16(), 403);
        let mut names = vec!["a", "b", "c"];
        caller.retain_allowed(&mut names, |n| n);
        assert_eq!(names, vec!["a"]);

        let open = Caller::anonymous(None);
        assert!(open.ensure_instance("b").is_ok());
    }
}
