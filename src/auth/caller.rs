//! Who made a request (for the history) and what their key allows (for routing): its instances,
//! route classes, and whether it may start or evict instances on demand.

use super::model::{Access, KeyKind};
use super::policy::{Policy, RouteClass};
use crate::activity::Route;
use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::quota::{KeyQuota, Moment, Refusal, Standing};
use std::net::IpAddr;
use std::sync::Arc;

/// An authenticated request's caller; handlers get it as `Extension<Caller>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who it is, for the history.
    pub actor: Actor,
    /// The kind of key presented; `None` when no key was needed.
    kind: Option<KeyKind>,
    access: Arc<Access>,
    /// Its quota counters, if its key has limits.
    quota: Option<Arc<KeyQuota>>,
    /// May see why things failed inside the server (a management key, or anyone while the
    /// management API is open).
    operator: bool,
}

impl Caller {
    /// Who it is, taken out (the caller is done with).
    pub fn into_actor(self) -> Actor {
        self.actor
    }

    /// A caller holding a key of `kind` that allows `access`.
    pub fn with_key(actor: Actor, kind: KeyKind, access: Arc<Access>) -> Self {
        Caller {
            actor,
            kind: Some(kind),
            access,
            quota: None,
            operator: kind == KeyKind::Management,
        }
    }

    /// The same caller, counted against `quota` (its key's counters, if it has limits).
    pub fn with_quota(mut self, quota: Option<Arc<KeyQuota>>) -> Self {
        self.quota = quota;
        self
    }

    /// Admits one request of `route` against the key's limits: `None` if none apply (no limits, or
    /// a read: health, props, models, slots, which run no inference), else the key's standing for
    /// the answer's `x-ratelimit-*` headers and the counters to charge its tokens to.
    pub fn admit(&self, route: Route) -> std::result::Result<Option<Admitted>, Refusal> {
        let Some(quota) = &self.quota else {
            return Ok(None);
        };
        if route == Route::Read {
            return Ok(None);
        }
        let standing = quota.admit(self.access.policy.limits, Moment::now())?;
        Ok(Some(Admitted {
            standing,
            quota: quota.clone(),
        }))
    }

    /// The key's usage against its limits now; `None` without limits.
    pub fn usage(&self) -> Option<crate::quota::QuotaUsage> {
        let quota = self.quota.as_ref()?;
        let at = Moment::now();
        Some(crate::quota::QuotaUsage::of(
            &self.access.policy.limits,
            &quota.counters(at),
            at,
        ))
    }

    /// Anyone, when auth is off; an operator if the management API is open too.
    pub fn anonymous(addr: Option<IpAddr>, operator: bool) -> Self {
        Caller {
            actor: Actor {
                addr,
                ..Actor::named("anonymous")
            },
            kind: None,
            access: Access::open(),
            quota: None,
            operator,
        }
    }

    /// True for a management key, or anyone while the management API is open.
    pub fn is_operator(&self) -> bool {
        self.operator
    }

    /// The kind of key presented; `None` when no key was needed.
    pub fn kind(&self) -> Option<KeyKind> {
        self.kind
    }

    /// What this caller's key allows.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// This caller's policy.
    pub fn policy(&self) -> &Policy {
        &self.access.policy
    }

    /// True if this caller may use the instance.
    pub fn may_use(&self, instance: &str) -> bool {
        self.access.scope.allows(instance)
    }

    /// 403 unless this caller's key may send requests of this kind.
    pub fn ensure_route(&self, route: Route) -> Result<()> {
        let class = RouteClass::of(route);
        if self.access.policy.routes.allows(class) {
            return Ok(());
        }
        Err(Error::Forbidden(format!(
            "this API key may not send {} requests (its routes: {})",
            crate::names::name_of(&class),
            self.access
                .policy
                .routes
                .list()
                .unwrap_or_default()
                .iter()
                .map(crate::names::name_of)
                .collect::<Vec<_>>()
                .join(", ")
        )))
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

/// A request admitted under its key's limits.
#[derive(Debug)]
pub struct Admitted {
    /// The key's standing once the request was counted.
    pub standing: Standing,
    /// The counters its answer's tokens are charged to.
    pub quota: Arc<KeyQuota>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::model::KeyScope;
    use crate::auth::policy::Routes;

    fn access(scope: KeyScope, routes: Routes) -> Arc<Access> {
        Arc::new(Access {
            scope,
            policy: Policy {
                routes,
                ..Policy::OPEN
            },
        })
    }

    #[test]
    fn a_scoped_caller_reaches_only_its_instances_and_routes() {
        let only = KeyScope::of(&["a".to_string(), "g-*".to_string()]).unwrap();
        let caller = Caller::with_key(
            Actor::named("k"),
            KeyKind::Inference,
            access(only, Routes::of(&[RouteClass::Chat])),
        );
        assert!(caller.ensure_instance("g-1").is_ok());
        assert!(caller.ensure_route(Route::ChatCompletions).is_ok());
        let err = caller.ensure_route(Route::Embeddings).unwrap_err();
        assert_eq!(err.status().as_u16(), 403);
        assert!(
            err.to_string()
                .contains("embeddings requests (its routes: chat)"),
            "{err}"
        );
        assert!(caller.ensure_instance("a").is_ok());
        let err = caller.ensure_instance("b").unwrap_err();
        assert_eq!(err.status().as_u16(), 403);
        let mut names = vec!["a", "b", "c", "g-2"];
        caller.retain_allowed(&mut names, |n| n);
        assert_eq!(names, vec!["a", "g-2"]);

        let open = Caller::anonymous(None, false);
        assert!(open.ensure_instance("b").is_ok());
    }

    #[test]
    fn only_operators_see_why_a_start_failed() {
        let failed = || Error::StartFailed {
            instance: "m".into(),
            reason: "exited; last log lines: --hf-token hf_secret".into(),
        };
        let user = Caller::with_key(Actor::named("k"), KeyKind::Inference, Access::open());
        let shown = user.shield(failed());
        assert_eq!(shown.status().as_u16(), 500);
        let text = shown.to_string();
        assert!(
            !text.contains("hf_secret") && text.contains("reference "),
            "{text}"
        );
        let admin = Caller::with_key(Actor::named("k"), KeyKind::Management, Access::open());
        assert!(admin.shield(failed()).to_string().contains("hf_secret"));
        assert!(Caller::anonymous(None, true)
            .shield(failed())
            .to_string()
            .contains("hf_secret"));
    }
}
