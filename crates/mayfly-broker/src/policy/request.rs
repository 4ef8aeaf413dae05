//! The facts policy decides on: a task start or an exchange
//! ([`PolicyRequest`]), one request through the injecting proxy
//! ([`UseRequest`]), or one JSON-RPC call through the MCP gate
//! ([`McpRequest`]).

use mayfly_store::TaskRecord;

use crate::identity::Workload;

/// The two actions policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Starting a task (decided once per audience it names).
    StartTask,
    /// Exchanging an identity for a credential.
    Exchange,
}

impl Action {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Action::StartTask => "start_task",
            Action::Exchange => "exchange",
        }
    }
}

/// What policy sees of a task: the one being started, or the stored task
/// a credential is asked for.
#[derive(Debug, Clone, Copy)]
pub struct TaskFacts<'a> {
    /// Why it runs.
    pub purpose: &'a str,
    /// Who answers for it.
    pub owner: &'a str,
    /// The tenant it runs for.
    pub tenant: &'a str,
    /// All its audiences.
    pub audiences: &'a [String],
    /// When it started (now, for a task being started).
    pub started_at: i64,
}

impl<'a> TaskFacts<'a> {
    /// The facts of a stored task.
    pub fn of(task: &'a TaskRecord) -> TaskFacts<'a> {
        TaskFacts {
            purpose: &task.purpose,
            owner: &task.owner,
            tenant: &task.tenant,
            audiences: &task.audiences,
            started_at: task.started_at,
        }
    }
}

/// The facts of one request.
#[derive(Debug, Clone)]
pub struct PolicyRequest<'a> {
    /// Who asks.
    pub workload: &'a Workload,
    /// What for.
    pub action: Action,
    /// The task.
    pub task: TaskFacts<'a>,
    /// The audience (resource).
    pub audience: &'a str,
    /// Scopes asked for.
    pub scope: &'a [String],
    /// Requested lifetime, in seconds.
    pub requested_ttl: i64,
    /// Now.
    pub now: i64,
    /// Whether the credential is DPoP-bound.
    pub dpop: bool,
    /// The caller's IP address.
    pub source_ip: &'a str,
}

/// One request through the injecting proxy: may this workload use this
/// custody entry for this method and path now?
#[derive(Debug, Clone)]
pub struct UseRequest<'a> {
    /// Who asks.
    pub workload: &'a Workload,
    /// The custody entry.
    pub entry: &'a str,
    /// Its provider.
    pub provider: &'a str,
    /// Who answers for it.
    pub entry_owner: &'a str,
    /// The credential's task.
    pub task_id: &'a str,
    /// That task.
    pub task: TaskFacts<'a>,
    /// The request's method.
    pub method: &'a str,
    /// Its path below the upstream base.
    pub path: &'a str,
    /// The upstream host.
    pub upstream: &'a str,
    /// Now.
    pub now: i64,
    /// Whether the credential is DPoP-bound.
    pub dpop: bool,
    /// The caller's IP address.
    pub source_ip: &'a str,
}

/// One JSON-RPC call through the MCP gate: may this workload's task make
/// it on this server now?
#[derive(Debug, Clone)]
pub struct McpRequest<'a> {
    /// Who asks.
    pub workload: &'a Workload,
    /// The server (the gate credential's audience).
    pub server: &'a str,
    /// The JSON-RPC method.
    pub method: &'a str,
    /// The tool (`tools/call`), or "".
    pub tool: &'a str,
    /// The resource URI or prompt name, or "".
    pub target: &'a str,
    /// The credential's task id.
    pub task_id: &'a str,
    /// That task.
    pub task: TaskFacts<'a>,
    /// Now.
    pub now: i64,
    /// The gate's address.
    pub source_ip: &'a str,
}
