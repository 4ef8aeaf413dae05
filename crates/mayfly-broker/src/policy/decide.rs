//! Cedar requests: entities and context built from the facts of a
//! decision, and the answer (permitting or forbidding policies, `@max_ttl`).

use cedar_policy::{
    Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityUid, PolicyId, Request,
    RestrictedExpression,
};

use super::{
    Action, Decision, McpRequest, Policies, PolicyEngine, PolicyRequest, SOURCE_IP_CACHE,
    TaskFacts, UseRequest,
};
use crate::identity::Workload;

fn text(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

impl PolicyEngine {
    /// The context value of a source address (see `source_ips`).
    fn source_ip(&self, address: &str) -> RestrictedExpression {
        let Ok(mut cache) = self.source_ips.lock() else {
            return RestrictedExpression::new_ip(address);
        };
        if let Some(expression) = cache.get(address) {
            return expression.clone();
        }
        if cache.len() >= SOURCE_IP_CACHE {
            cache.clear();
        }
        let expression = RestrictedExpression::new_ip(address);
        cache.insert(address.to_owned(), expression.clone());
        expression
    }

    /// Decides a task start or an exchange. Anything that cannot be
    /// expressed to Cedar denies.
    pub fn decide(&self, policies: &Policies, req: &PolicyRequest<'_>) -> Decision {
        self.try_decide(policies, req)
            .unwrap_or_else(Decision::error)
    }

    /// Decides one request through the injecting proxy (action `use`).
    pub fn decide_use(&self, policies: &Policies, req: &UseRequest<'_>) -> Decision {
        self.try_decide_use(policies, req)
            .unwrap_or_else(Decision::error)
    }

    /// Decides one JSON-RPC call through the MCP gate (action `mcp`).
    pub fn decide_mcp(&self, policies: &Policies, req: &McpRequest<'_>) -> Decision {
        self.try_decide_mcp(policies, req)
            .unwrap_or_else(Decision::error)
    }

    fn try_decide_mcp(
        &self,
        policies: &Policies,
        req: &McpRequest<'_>,
    ) -> Result<Decision, String> {
        let (principal, entities) = self.principal(req.workload)?;
        let resource =
            EntityUid::from_type_name_and_id(self.mcp_type.clone(), EntityId::new(req.server));
        let context = Context::from_pairs(
            [
                ("method".to_owned(), text(req.method)),
                ("tool".to_owned(), text(req.tool)),
                ("target".to_owned(), text(req.target)),
            ]
            .into_iter()
            .chain(self.credential_context(
                req.task_id,
                &req.task,
                req.now,
                req.source_ip,
            )),
        )
        .map_err(|e| e.to_string())?;
        let request = Request::new(principal, self.actions[3].clone(), resource, context, None)
            .map_err(|e| e.to_string())?;
        self.answer(policies, &request, entities)
    }

    /// What the context of a request made with a task's credential always
    /// holds (actions `use` and `mcp`): the task, the time, the caller.
    fn credential_context(
        &self,
        task_id: &str,
        task: &TaskFacts<'_>,
        now: i64,
        source_ip: &str,
    ) -> [(String, RestrictedExpression); 7] {
        [
            ("task".to_owned(), text(task_id)),
            ("purpose".to_owned(), text(task.purpose)),
            ("owner".to_owned(), text(task.owner)),
            ("tenant".to_owned(), text(task.tenant)),
            ("time".to_owned(), RestrictedExpression::new_long(now)),
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(now.rem_euclid(86_400) / 3600),
            ),
            ("source_ip".to_owned(), self.source_ip(source_ip)),
        ]
    }

    /// The workload as a Cedar principal, in its issuer, with its tags.
    fn principal(&self, workload: &Workload) -> Result<(EntityUid, Vec<Entity>), String> {
        let principal = EntityUid::from_type_name_and_id(
            self.workload_type.clone(),
            EntityId::new(&workload.id),
        );
        let issuer = EntityUid::from_type_name_and_id(
            self.issuer_type.clone(),
            EntityId::new(&workload.issuer),
        );
        let entity = Entity::new_with_tags(
            principal.clone(),
            [
                ("issuer".to_owned(), text(&workload.issuer)),
                ("kind".to_owned(), text(workload.kind)),
                ("tenant".to_owned(), text(&workload.tenant)),
            ],
            [issuer.clone()],
            workload.tags.iter().map(|(k, v)| (k.clone(), text(v))),
        )
        .map_err(|e| e.to_string())?;
        Ok((principal, vec![entity, Entity::with_uid(issuer)]))
    }

    fn try_decide(&self, policies: &Policies, req: &PolicyRequest<'_>) -> Result<Decision, String> {
        let (principal, entities) = self.principal(req.workload)?;
        let resource = EntityUid::from_type_name_and_id(
            self.resource_type.clone(),
            EntityId::new(req.audience),
        );
        let action = match req.action {
            Action::StartTask => &self.actions[0],
            Action::Exchange => &self.actions[1],
        };
        let strings =
            |items: &[String]| RestrictedExpression::new_set(items.iter().map(|s| text(s)));
        let context = Context::from_pairs([
            ("purpose".to_owned(), text(req.task.purpose)),
            ("owner".to_owned(), text(req.task.owner)),
            ("tenant".to_owned(), text(req.task.tenant)),
            ("audience".to_owned(), text(req.audience)),
            ("audiences".to_owned(), strings(req.task.audiences)),
            ("scope".to_owned(), strings(req.scope)),
            (
                "requested_ttl".to_owned(),
                RestrictedExpression::new_long(req.requested_ttl),
            ),
            ("time".to_owned(), RestrictedExpression::new_long(req.now)),
            (
                "hour".to_owned(),
                RestrictedExpression::new_long(req.now.rem_euclid(86_400) / 3600),
            ),
            (
                "task_age".to_owned(),
                RestrictedExpression::new_long(req.now - req.task.started_at),
            ),
            ("dpop".to_owned(), RestrictedExpression::new_bool(req.dpop)),
            ("source_ip".to_owned(), self.source_ip(req.source_ip)),
        ])
        .map_err(|e| e.to_string())?;
        let request = Request::new(principal, action.clone(), resource, context, None)
            .map_err(|e| e.to_string())?;
        self.answer(policies, &request, entities)
    }

    fn try_decide_use(
        &self,
        policies: &Policies,
        req: &UseRequest<'_>,
    ) -> Result<Decision, String> {
        let (principal, mut entities) = self.principal(req.workload)?;
        let resource =
            EntityUid::from_type_name_and_id(self.custody_type.clone(), EntityId::new(req.entry));
        entities.push(
            Entity::new(
                resource.clone(),
                [
                    ("provider".to_owned(), text(req.provider)),
                    ("owner".to_owned(), text(req.entry_owner)),
                ]
                .into_iter()
                .collect(),
                std::collections::HashSet::new(),
            )
            .map_err(|e| e.to_string())?,
        );
        let context = Context::from_pairs(
            [
                ("method".to_owned(), text(req.method)),
                ("path".to_owned(), text(req.path)),
                ("upstream".to_owned(), text(req.upstream)),
                ("dpop".to_owned(), RestrictedExpression::new_bool(req.dpop)),
            ]
            .into_iter()
            .chain(self.credential_context(
                req.task_id,
                &req.task,
                req.now,
                req.source_ip,
            )),
        )
        .map_err(|e| e.to_string())?;
        let request = Request::new(principal, self.actions[2].clone(), resource, context, None)
            .map_err(|e| e.to_string())?;
        self.answer(policies, &request, entities)
    }

    /// Cedar's answer: which policies decided, and the lowest `@max_ttl`
    /// of the permitting ones.
    fn answer(
        &self,
        policies: &Policies,
        request: &Request,
        entities: Vec<Entity>,
    ) -> Result<Decision, String> {
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(request, &policies.set, &entities);
        let reasons: Vec<&PolicyId> = response.diagnostics().reason().collect();
        let allowed = response.decision() == CedarDecision::Allow;
        let max_ttl = if allowed {
            reasons
                .iter()
                .filter_map(|id| policies.max_ttl.get(*id))
                .min()
                .copied()
        } else {
            None
        };
        Ok(Decision {
            allowed,
            policies: reasons.iter().map(|id| id.to_string()).collect(),
            max_ttl,
            errors: response
                .diagnostics()
                .errors()
                .map(|e| e.to_string())
                .collect(),
        })
    }
}
