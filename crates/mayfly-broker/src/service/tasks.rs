//! Tasks: started by a verified workload for a purpose, an owner and
//! audiences; ended by it or an admin, which revokes every credential.

use std::sync::Arc;

use mayfly_store::{BrokerWrite, RevokeSelector, TaskFilter, TaskRecord, WriteOutcome};
use serde_json::json;

use super::{Broker, Question, event};
use crate::auth::Caller;
use crate::b64;
use crate::error::{BrokerError, internal};
use crate::identity::Workload;
use crate::policy::{Action, TaskFacts};
use crate::protocol::{CredentialView, ProxyUsageView, StartTask, TaskView};
use crate::task_cache::Forget;

impl Broker {
    /// Starts a task for a verified workload; policy decides each audience.
    pub async fn start_task(
        &self,
        workload: &Workload,
        request: StartTask,
        source_ip: &str,
    ) -> Result<TaskView, BrokerError> {
        let now = self.now();
        let tokens = &self.config.tokens;
        let request =
            request.validate(tokens.default_task_ttl_seconds, tokens.max_task_ttl_seconds)?;
        let tenant = request
            .tenant
            .clone()
            .unwrap_or_else(|| workload.tenant.clone());
        if tenant != workload.tenant {
            return Err(BrokerError::Forbidden(format!(
                "workload {} acts for tenant {}, not {tenant}",
                workload.id, workload.tenant
            )));
        }
        self.check_custody_audiences(&request.audiences).await?;
        self.check_upstream_audiences(&request.audiences)?;
        let policies = self.current_policies();
        let facts = TaskFacts {
            purpose: &request.purpose,
            owner: &request.owner,
            tenant: &tenant,
            audiences: &request.audiences,
            started_at: now,
        };
        for audience in &request.audiences {
            let decision = self.decide(
                &policies,
                &Question {
                    action: Action::StartTask,
                    workload,
                    task: facts,
                    audience,
                    scope: &[],
                    requested_ttl: request.ttl,
                    dpop: false,
                    source_ip,
                },
            );
            if !decision.allowed {
                self.deny(
                    "task.deny",
                    json!({"workload": workload.id, "audience": audience, "owner": request.owner,
                           "purpose": request.purpose, "policies": decision.policies, "errors": decision.errors}),
                )
                .await;
                return Err(BrokerError::AccessDenied(format!(
                    "starting a task for {audience} is denied: {}",
                    decision.reason()
                )));
            }
        }
        let id = b64::random_id().map_err(internal)?;
        let task = TaskRecord {
            id: id.clone(),
            workload: workload.id.clone(),
            issuer: workload.issuer.clone(),
            owner: request.owner,
            purpose: request.purpose,
            tenant,
            audiences: request.audiences,
            attributes: workload.attributes_json(),
            source_addr: source_ip.to_owned(),
            started_at: now,
            expires_at: now + request.ttl,
            ended_at: None,
            end_reason: None,
        };
        let audit = event(
            now,
            "task.start",
            json!({"task": id, "workload": workload.id, "owner": task.owner, "purpose": task.purpose,
                   "tenant": task.tenant, "audiences": task.audiences, "expires_at": task.expires_at}),
        );
        let max_live = i64::from(self.config.limits.max_live_tasks_per_workload);
        let outcome = self
            .writer
            .apply_one(BrokerWrite::StartTask {
                task: task.clone(),
                max_live: Some(max_live),
                audit,
            })
            .await?;
        if let WriteOutcome::Refused(_) = outcome {
            self.deny(
                "task.deny",
                json!({"workload": workload.id, "reason": "live task quota", "limit": max_live}),
            )
            .await;
            return Err(BrokerError::TooManyRequests(format!(
                "workload {} already has {max_live} live tasks (limits.max_live_tasks_per_workload); end some with POST /v1/tasks/{{id}}/end (`mayfly task end ID`)",
                workload.id
            )));
        }
        let view = TaskView::of(&task, now);
        self.tasks.insert(Arc::new(task), now);
        Ok(view)
    }

    /// A task as the store has it now.
    pub(super) async fn stored_task(&self, id: &str) -> Result<TaskRecord, BrokerError> {
        let owned = id.to_owned();
        // No task id holds a control character (PostgreSQL would refuse a
        // NUL in the lookup as if the store had failed).
        let found = if id.chars().any(char::is_control) {
            None
        } else {
            self.readers.read(move |s| s.broker_task(&owned)).await?
        };
        found.ok_or_else(|| {
            BrokerError::NotFound(format!(
                "task {id} does not exist; start one with POST /v1/tasks (`mayfly task start`)"
            ))
        })
    }

    /// A task from the cache, or the store (and then cached while live).
    pub(super) async fn load_task(&self, id: &str) -> Result<Arc<TaskRecord>, BrokerError> {
        if let Some(task) = self.tasks.get(id) {
            return Ok(task);
        }
        let task = Arc::new(self.stored_task(id).await?);
        self.tasks.insert(task.clone(), self.now());
        Ok(task)
    }

    fn may_see(caller: &Caller, task: &TaskRecord) -> Result<(), BrokerError> {
        match caller {
            Caller::Admin => Ok(()),
            Caller::Workload(w) if w.id == task.workload && w.issuer == task.issuer => Ok(()),
            _ => Err(BrokerError::Forbidden(format!(
                "task {} belongs to another workload; only it or an admin may do this",
                task.id
            ))),
        }
    }

    /// A task with its credentials.
    pub async fn show_task(&self, caller: &Caller, id: &str) -> Result<TaskView, BrokerError> {
        let now = self.now();
        let task = self.stored_task(id).await?;
        Self::may_see(caller, &task)?;
        let owned = id.to_owned();
        let (leases, usage) = self
            .readers
            .read(move |s| Ok((s.broker_task_leases(&owned)?, s.proxy_usage(&owned)?)))
            .await?;
        let mut view = TaskView::of(&task, now);
        view.credentials = Some(leases.iter().map(|l| CredentialView::of(l, now)).collect());
        view.proxy_usage = Some(
            usage
                .into_iter()
                .map(|u| ProxyUsageView {
                    entry: u.entry,
                    requests: u.requests,
                    bytes_up: u.bytes_up,
                    bytes_down: u.bytes_down,
                    last_at: u.last_at,
                })
                .collect(),
        );
        Ok(view)
    }

    /// Ends a task and revokes all its credentials at once.
    pub async fn end_task(&self, caller: &Caller, id: &str) -> Result<TaskView, BrokerError> {
        let now = self.now();
        let task = self.stored_task(id).await?;
        if let Err(e) = Self::may_see(caller, &task) {
            if let Caller::Workload(w) = caller {
                self.deny("task.end.deny", json!({"task": id, "workload": w.id}))
                    .await;
            }
            return Err(e);
        }
        let outcome = self
            .writer
            .apply_one(BrokerWrite::EndTask {
                task_id: id.to_owned(),
                at: now,
                reason: "ended".into(),
                audit: event(
                    now,
                    "task.end",
                    json!({"task": id, "by": caller.audit_name(), "owner": task.owner}),
                ),
            })
            .await?;
        self.tasks
            .forget(Forget::Revoked(&RevokeSelector::Task(id.to_owned())));
        match outcome {
            WriteOutcome::Done(revoked) => {
                let mut view = self.show_task(&Caller::Admin, id).await?;
                view.revoked = Some(revoked);
                Ok(view)
            }
            WriteOutcome::Refused(why) => Err(BrokerError::InvalidRequest(why)),
        }
    }

    /// Tasks (admin).
    pub async fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<TaskView>, BrokerError> {
        let now = self.now();
        Ok(self
            .readers
            .read(move |s| s.broker_tasks(&filter))
            .await?
            .iter()
            .map(|t| TaskView::of(t, now))
            .collect())
    }
}
