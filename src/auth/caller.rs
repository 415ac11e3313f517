//! Who made a request (for the history) and which instances they may reach (for routing).

use super::model::{KeyKind, KeyScope};
use crate::audit::Actor;
use crate::error::{Error, Result};
use std::net::IpAddr;

/// An authenticated request's caller; handlers get it as `Extension<Caller>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who it is, for the history.
    pub actor: Actor,
    scope: KeyScope,
    /// May see why things failed inside the server (a management key, or anyone while the
    /// management API is open).
    operator: bool,
}

impl Caller {
    /// Who it is, taken out (the caller is done with).
    pub fn into_actor(self) -> Actor {
        self.actor
    }

    /// A caller holding a key of `kind`, limited to `scope`.
    pub fn with_key(actor: Actor, kind: KeyKind, scope: KeyScope) -> Self {
        Caller {
            actor,
            scope,
            operator: kind == KeyKind::Management,
        }
    }

    /// Anyone, when auth is off; an operator if the management API is open too.
    pub fn anonymous(addr: Option<IpAddr>, operator: bool) -> Self {
        Caller {
            actor: Actor {
                addr,
                ..Actor::named("anonymous")
            },
            scope: KeyScope::All,
            operator,
        }
    }

    /// True for a management key, or anyone while the management API is open.
    pub fn is_operator(&self) -> bool {
        self.operator
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

    /// The error as this caller may see it: a failed start quotes the backend's log (its command
    /// line, paths, whatever the backend printed), so a caller who is not an operator gets a
    /// generic 500 (same status, no details) with a reference to the full reason, which goes to llamactl's log.
    pub fn shield(&self, error: Error) -> Error {
        match error {
            Error::StartFailed { instance, reason } if !self.operator => {
                let reference = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
                tracing::warn!(%instance, %reference, %reason, "start failed for an inference request");
                Error::StartFailed {
                    instance,
                    reason: format!(
                        "an administrator can find the reason in llamactl's log (reference \
                         {reference})"
                    ),
                }
            }
            other => other,
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
        let caller = Caller::with_key(Actor::named("k"), KeyKind::Inference, only);
        assert!(caller.ensure_instance("a").is_ok());
        let err = caller.ensure_instance("b").unwrap_err();
        assert_eq!(err.status().as_u16(), 403);
        let mut names = vec!["a", "b", "c"];
        caller.retain_allowed(&mut names, |n| n);
        assert_eq!(names, vec!["a"]);

        let open = Caller::anonymous(None, false);
        assert!(open.ensure_instance("b").is_ok());
    }

    #[test]
    fn only_operators_see_why_a_start_failed() {
        let failed = || Error::StartFailed {
            instance: "m".into(),
            reason: "exited; last log lines: --hf-token hf_secret".into(),
        };
        let user = Caller::with_key(Actor::named("k"), KeyKind::Inference, KeyScope::All);
        let shown = user.shield(failed());
        assert_eq!(shown.status().as_u16(), 500);
        let text = shown.to_string();
        assert!(
            !text.contains("hf_secret") && text.contains("reference "),
            "{text}"
        );
        let admin = Caller::with_key(Actor::named("k"), KeyKind::Management, KeyScope::All);
        assert!(admin.shield(failed()).to_string().contains("hf_secret"));
        assert!(Caller::anonymous(None, true)
            .shield(failed())
            .to_string()
            .contains("hf_secret"));
    }
}
