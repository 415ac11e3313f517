//! Queries on the `instances` table: definitions, desired state, and the PID of a running child.

use super::{is_unique_violation, Db, OnDb};
use crate::error::{Error, Result};
use crate::names;

/// Whether an instance should run, and who stopped it if it should not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Start it (again) on boot.
    Running,
    /// Stopped by an operator: stays stopped, on boot and (unless its definition allows it) when a
    /// request asks for it.
    Stopped,
    /// Stopped by llamactl itself (evicted, idle): not started on boot, but on the next request.
    Dormant,
}

/// Identifies one process beyond its PID, so a reused PID is never mistaken for our child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessMark {
    /// The PID (also the process group id: children lead their own group).
    pub pid: i64,
    /// `/proc/<pid>/stat` field 22.
    pub start_ticks: i64,
    /// `/proc/sys/kernel/random/boot_id` when it was started.
    pub boot_id: String,
}

/// One stored instance.
#[derive(Debug, Clone)]
pub struct InstanceRow {
    /// Unique name.
    pub name: String,
    /// JSON definition.
    pub spec: String,
    /// Whether it should run.
    pub desired: Desired,
    /// Unix seconds.
    pub created_at: i64,
    /// The child a server last started, if it may still be alive.
    pub process: Option<ProcessMark>,
}

impl Db {
    /// All instances, oldest first.
    pub async fn list_instances(&self) -> Result<Vec<InstanceRow>> {
        let rows = sqlx::query!(
            r#"SELECT name as "name!", spec, desired_state, created_at, pid, pid_start_ticks, pid_boot_id
               FROM instances ORDER BY created_at, name"#
        )
        .fetch_all(self.pool())
        .await.on(self)?;
        Ok(rows
            .into_iter()
            .map(|r| InstanceRow {
                process: match (r.pid, r.pid_start_ticks, r.pid_boot_id) {
                    (Some(pid), Some(start_ticks), Some(boot_id)) => Some(ProcessMark {
                        pid,
                        start_ticks,
                        boot_id,
                    }),
                    _ => None,
                },
                name: r.name,
                spec: r.spec,
                // An unknown value fails closed: nothing starts it but an operator.
                desired: names::parse(&r.desired_state).unwrap_or(Desired::Stopped),
                created_at: r.created_at,
            })
            .collect())
    }

    /// Stores a new instance; a taken name is a conflict.
    pub async fn insert_instance(
        &self,
        name: &str,
        spec: &str,
        desired: Desired,
        now: i64,
    ) -> Result<()> {
        let desired = names::name_of(&desired);
        sqlx::query!(
            "INSERT INTO instances (name, spec, desired_state, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            name,
            spec,
            desired,
            now,
            now
        )
        .execute(self.pool())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("instance '{name}' already exists"))
            } else {
                self.failed(e)
            }
        })?;
        Ok(())
    }

    /// Replaces an instance's definition.
    pub async fn update_instance_spec(&self, name: &str, spec: &str, now: i64) -> Result<()> {
        sqlx::query!(
            "UPDATE instances SET spec = ?, updated_at = ? WHERE name = ?",
            spec,
            now,
            name
        )
        .execute(self.pool())
        .await
        .on(self)?;
        Ok(())
    }

    /// Records whether an instance should run.
    pub async fn set_desired(&self, name: &str, desired: Desired) -> Result<()> {
        let desired = names::name_of(&desired);
        sqlx::query!(
            "UPDATE instances SET desired_state = ? WHERE name = ?",
            desired,
            name
        )
        .execute(self.pool())
        .await
        .on(self)?;
        Ok(())
    }

    /// Records (or clears) the child process of an instance.
    pub async fn set_process(&self, name: &str, mark: Option<&ProcessMark>) -> Result<()> {
        let (pid, ticks, boot) = match mark {
            Some(m) => (Some(m.pid), Some(m.start_ticks), Some(m.boot_id.as_str())),
            None => (None, None, None),
        };
        sqlx::query!(
            "UPDATE instances SET pid = ?, pid_start_ticks = ?, pid_boot_id = ? WHERE name = ?",
            pid,
            ticks,
            boot,
            name
        )
        .execute(self.pool())
        .await
        .on(self)?;
        Ok(())
    }

    /// Removes an instance's definition.
    pub async fn delete_instance(&self, name: &str) -> Result<()> {
        sqlx::query!("DELETE FROM instances WHERE name = ?", name)
            .execute(self.pool())
            .await
            .on(self)?;
        Ok(())
    }
}
