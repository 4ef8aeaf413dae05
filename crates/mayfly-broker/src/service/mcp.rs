//! The MCP gate's decisions: each JSON-RPC call a gated MCP server
//! receives is decided by Cedar (action `mcp`) for the workload and task of
//! the gate's credential, whose audience names the server
//! (`urn:mayfly:mcp:<name>`); each finished call is one audit event.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Broker, BrokerWrite, event};
use crate::error::BrokerError;
use crate::identity::Workload;
use crate::policy::{McpRequest, TaskFacts};
use mayfly_store::{LeaseRecord, TaskRecord};

/// The prefix of MCP servers' audiences.
pub const MCP_AUDIENCE_PREFIX: &str = "urn:mayfly:mcp:";

/// At most this many calls are decided or recorded per request.
pub const MAX_MCP_CALLS: usize = 1000;

/// One call to decide.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpCall {
    /// The JSON-RPC method.
    pub method: String,
    /// The tool (`tools/call`), if any.
    #[serde(default)]
    pub tool: String,
    /// The resource URI or prompt name, if any.
    #[serde(default)]
    pub target: String,
}

/// The decision on one call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpDecision {
    /// Whether it may go to the server.
    pub allowed: bool,
    /// Why (the deciding policies, or default deny).
    pub reason: String,
}

/// One finished call, for the audit (never its arguments).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct McpRecord {
    /// The JSON-RPC method.
    pub method: String,
    /// The tool, if any.
    #[serde(default)]
    pub tool: String,
    /// The resource URI or prompt name, if any.
    #[serde(default)]
    pub target: String,
    /// Whether policy allowed it.
    pub allowed: bool,
    /// Whether the server answered with an error.
    #[serde(default)]
    pub failed: bool,
    /// Milliseconds from the request to the server's answer (0 when denied).
    #[serde(default)]
    pub duration_ms: u64,
}

impl Broker {
    /// The live lease, task and workload behind a gate's bearer credential
    /// for `server` (the audience the gate guards).
    async fn mcp_caller(
        &self,
        token: Option<&str>,
        server: &str,
    ) -> Result<(LeaseRecord, std::sync::Arc<TaskRecord>, Workload), BrokerError> {
        let Some(token) = token.and_then(|t| t.strip_prefix("Bearer ")) else {
            return Err(BrokerError::InvalidToken(format!(
                "send the gate's Mayfly access token (audience {MCP_AUDIENCE_PREFIX}<server>) as Bearer"
            )));
        };
        let Some((_, lease)) = self.leased(token.trim()).await? else {
            return Err(BrokerError::InvalidToken(
                "the token is not one Mayfly issued, or it was altered".into(),
            ));
        };
        if !lease.is_active(self.now()) {
            return Err(BrokerError::InvalidToken(
                "the gate's token was revoked or has expired (its task ended?)".into(),
            ));
        }
        if lease.audience != server {
            return Err(BrokerError::InvalidToken(format!(
                "the token is for audience {}, not this MCP server ({server}); get one for {server}",
                lease.audience
            )));
        }
        if lease.cnf_jkt.is_some() {
            return Err(BrokerError::InvalidToken(
                "the gate's token is DPoP-bound; the gate presents a bearer credential of its own task".into(),
            ));
        }
        let task = self.load_task(&lease.task_id).await?;
        let Some(workload) = Workload::from_attributes(&task.workload, &task.attributes) else {
            return Err(BrokerError::AccessDenied(format!(
                "task {} has workload attributes policy cannot read",
                task.id
            )));
        };
        Ok((lease, task, workload))
    }

    /// Decides calls through the MCP gate.
    pub async fn decide_mcp(
        &self,
        token: Option<&str>,
        server: &str,
        calls: &[McpCall],
        source_ip: &str,
    ) -> Result<Vec<McpDecision>, BrokerError> {
        if calls.len() > MAX_MCP_CALLS {
            return Err(BrokerError::InvalidRequest(format!(
                "{} calls in one request; send at most {MAX_MCP_CALLS}",
                calls.len()
            )));
        }
        let (lease, task, workload) = self.mcp_caller(token, server).await?;
        let policies = self.current_policies();
        let now = self.now();
        Ok(calls
            .iter()
            .map(|call| {
                let decision = self.engine.decide_mcp(
                    &policies,
                    &McpRequest {
                        workload: &workload,
                        server: &lease.audience,
                        method: &call.method,
                        tool: &call.tool,
                        target: &call.target,
                        task_id: &task.id,
                        task: TaskFacts::of(&task),
                        now,
                        source_ip,
                    },
                );
                McpDecision {
                    allowed: decision.allowed,
                    reason: decision.reason(),
                }
            })
            .collect())
    }

    /// Records finished calls: one audit event each.
    pub async fn record_mcp(
        &self,
        token: Option<&str>,
        server: &str,
        records: &[McpRecord],
    ) -> Result<usize, BrokerError> {
        if records.len() > MAX_MCP_CALLS {
            return Err(BrokerError::InvalidRequest(format!(
                "{} records in one request; send at most {MAX_MCP_CALLS}",
                records.len()
            )));
        }
        let (lease, task, workload) = self.mcp_caller(token, server).await?;
        let now = self.now();
        // One group commit for the whole batch, not one per record.
        let writes = records
            .iter()
            .map(|record| {
                BrokerWrite::Audit(event(
                    now,
                    "mcp.call",
                    json!({"task": task.id, "workload": workload.id, "server": lease.audience,
                           "method": record.method, "tool": record.tool, "target": record.target,
                           "decision": if record.allowed { "allowed" } else { "denied" },
                           "failed": record.failed, "duration_ms": record.duration_ms}),
                ))
            })
            .collect();
        self.writer.apply(writes).await?;
        Ok(records.len())
    }
}
