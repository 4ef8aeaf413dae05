//! Cedar policy decides every start and exchange; a policy change revokes
//! what it no longer allows.

use std::collections::BTreeMap;

use mayfly_broker::client::TaskRequest;
use mayfly_store::{BrokerWrite, NewAuditEvent, NewPolicySet, Store, WriteOutcome};
use serde_json::json;

use super::harness::{ADMIN, AUD, BACKENDS, Harness};

const OTHER: &str = "https://billing.test";

const PERMIT_BOTH: &str = r#"
@id("start")
permit (principal, action == Action::"start_task", resource)
when { context.purpose != "forbidden" && context.requested_ttl <= 3600 };

@id("exchange-api")
permit (principal, action == Action::"exchange", resource == Resource::"https://api.test");

@id("exchange-billing")
permit (principal, action == Action::"exchange", resource == Resource::"https://billing.test")
when { principal.tenant == "acme" };
"#;

fn with_policies(backend: super::harness::Backend, dir: &std::path::Path) -> Harness {
    std::fs::write(dir.join("base.cedar"), PERMIT_BOTH).unwrap();
    let dir = dir.to_owned();
    Harness::start_with(backend, move |c| c.policy.dir = Some(dir))
}

fn put_policies(h: &Harness, files: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let policies: BTreeMap<&str, &str> = files.iter().copied().collect();
    let body = serde_json::to_vec(&json!({ "policies": policies })).unwrap();
    h.raw(
        "PUT",
        "/v1/admin/policies",
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

#[test]
fn policies_decide_with_reasons_and_default_deny() {
    let policies = tempfile::tempdir().unwrap();
    let h = with_policies(super::harness::Backend::Sqlite, policies.path());
    let identity = h.identity("svc:a");
    let err = h
        .client()
        .start_task(
            &identity,
            &TaskRequest {
                purpose: "forbidden".into(),
                owner: "team-a".into(),
                ttl_seconds: None,
                audiences: vec![AUD.into()],
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("403 access_denied"), "{err}");
    assert!(err.to_string().contains("default deny"), "{err}");

    let task = h.start_task(&identity, "team-a", &[AUD, OTHER, "https://unlisted.test"]);
    h.exchange(&identity, &task.id, AUD);
    h.exchange(&identity, &task.id, OTHER);
    let err = h
        .client()
        .exchange(&identity, &task.id, "https://unlisted.test", None, None)
        .unwrap_err();
    assert!(err.to_string().contains("no policy permits it"), "{err}");
    // An audience the task did not name is refused before policy.
    let err = h
        .client()
        .exchange(&identity, &task.id, "https://never.test", None, None)
        .unwrap_err();
    assert!(err.to_string().contains("invalid_target"), "{err}");

    let kinds: Vec<String> = Store::open(&h.db)
        .unwrap()
        .audit_tail(50)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "task.deny").count(), 1);
    assert_eq!(kinds.iter().filter(|k| *k == "token.deny").count(), 1);
}

#[test]
fn a_policy_change_revokes_what_it_no_longer_allows() {
    for backend in BACKENDS {
        let policies = tempfile::tempdir().unwrap();
        let h = with_policies(backend, policies.path());
        let identity = h.identity("svc:a");
        let task = h.start_task(&identity, "team-a", &[AUD, OTHER]);
        let api = h.exchange(&identity, &task.id, AUD).access_token;
        let billing = h.exchange(&identity, &task.id, OTHER).access_token;

        // A broken policy is refused with Cedar's diagnostics; the old set stays.
        let (status, body) = put_policies(
            &h,
            &[(
                "broken.cedar",
                "permit (principal, action, resource) when { context.nope };",
            )],
        );
        assert_eq!(status, 400, "{body}");
        assert!(
            body["error_description"].as_str().unwrap().contains("nope"),
            "{body}"
        );
        assert!(h.active(&api) && h.active(&billing));
        h.exchange(&identity, &task.id, OTHER);

        // Billing is no longer allowed: its live credentials are revoked.
        let (status, body) = put_policies(
            &h,
            &[(
                "base.cedar",
                r#"@id("start") permit (principal, action == Action::"start_task", resource);
                   @id("exchange-api") permit (principal, action == Action::"exchange", resource == Resource::"https://api.test");"#,
            )],
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["revoked"], json!(2));
        assert!(h.active(&api));
        assert!(!h.active(&billing));
        let credentials = h
            .client()
            .show_task(&identity, &task.id)
            .unwrap()
            .credentials
            .unwrap();
        let reasons: Vec<_> = credentials
            .iter()
            .filter_map(|c| c.revoke_reason.clone())
            .collect();
        assert!(
            reasons.iter().all(|r| r.starts_with("policy change")),
            "{reasons:?}"
        );
        // The new set was written to the directory: a restart keeps it.
        let text = std::fs::read_to_string(policies.path().join("base.cedar")).unwrap();
        assert!(!text.contains("billing"));
        assert_eq!(
            Store::open(&h.db).unwrap().audit_verify().unwrap().problem,
            None
        );
    }
}

#[test]
fn example_policies_validate() {
    let engine = mayfly_broker::policy::PolicyEngine::new().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let loaded = engine.load_dir(&dir).unwrap();
    assert!(loaded.ids.len() >= 4, "{:?}", loaded.ids);
}

const DENY_BILLING: &str = r#"
@id("start") permit (principal, action == Action::"start_task", resource);
@id("exchange-api") permit (principal, action == Action::"exchange", resource == Resource::"https://api.test");
"#;

#[test]
fn no_credential_outlives_a_policy_that_denies_it_even_mid_exchange() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let policies = tempfile::tempdir().unwrap();
    let h = with_policies(super::harness::Backend::Sqlite, policies.path());
    let identity = h.identity("svc:a");
    let task = h.start_task(&identity, "team-a", &[AUD, OTHER]);
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(Mutex::new(Vec::new()));
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let client = h.client();
            let (identity, task, stop, issued) = (
                identity.clone(),
                task.id.clone(),
                stop.clone(),
                issued.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(response) = client.exchange(&identity, &task, OTHER, None, None) {
                        issued.lock().unwrap().push(response.access_token);
                    }
                }
            })
        })
        .collect();
    // Flip between allowing and denying billing credentials while the loops
    // exchange; each flip to deny must leave no billing credential active
    // (those checked in earlier rounds stay revoked).
    let mut checked = 0;
    for round in 0..30 {
        let (status, body) = put_policies(&h, &[("base.cedar", PERMIT_BOTH)]);
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (status, body) = put_policies(&h, &[("base.cedar", DENY_BILLING)]);
        assert_eq!(status, 200, "{body}");
        let tokens = issued.lock().unwrap().clone();
        let survivors = tokens[checked..].iter().filter(|t| h.active(t)).count();
        checked = tokens.len();
        assert_eq!(
            survivors, 0,
            "round {round}: {survivors} billing credentials active under a policy that denies them"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.join().unwrap();
    }
    let tokens = issued.lock().unwrap().clone();
    assert!(
        tokens.len() > 30,
        "the loops got {} credentials",
        tokens.len()
    );
    assert_eq!(tokens.iter().filter(|t| h.active(t)).count(), 0);
}

/// A replica that stored a new policy set and died while it held the
/// set's re-evaluation: the other replicas put the set in force at once,
/// and one of them runs the re-evaluation once the dead one's claim lapses.
#[test]
fn a_re_evaluation_left_by_a_dead_replica_is_taken_over() {
    for backend in BACKENDS {
        let policies = tempfile::tempdir().unwrap();
        let h = with_policies(backend, policies.path());
        let identity = h.identity("svc:a");
        let task = h.start_task(&identity, "team-a", &[AUD, OTHER]);
        let billing = h.exchange(&identity, &task.id, OTHER).access_token;
        let only_api = r#"@id("start") permit (principal, action == Action::"start_task", resource);
            @id("exchange-api") permit (principal, action == Action::"exchange", resource == Resource::"https://api.test");"#;
        let now = h.now();
        let stored = Store::open(&h.db)
            .unwrap()
            .broker_apply(&[
                BrokerWrite::InstallPolicySet(NewPolicySet {
                    digest: "set of the dead replica".into(),
                    origin: "a replica now dead".into(),
                    files: vec![("base.cedar".into(), only_api.into())],
                    at: now,
                    audit: NewAuditEvent::new(now, "policy.load", json!({})),
                }),
                BrokerWrite::ClaimReevaluation {
                    generation: 2,
                    claimer: "the dead replica".into(),
                    at: now,
                    until: now + 30,
                },
            ])
            .unwrap();
        assert_eq!(
            stored,
            vec![WriteOutcome::Done(2), WriteOutcome::Done(1)],
            "{backend:?}"
        );
        // In force here from the next exchange: billing is denied...
        let err = h
            .client()
            .exchange(&identity, &task.id, OTHER, None, None)
            .unwrap_err();
        assert!(err.to_string().contains("access_denied"), "{err}");
        // ...but its live credential waits for the claim to lapse.
        h.rt.block_on(h.broker.follow_store()).unwrap();
        assert!(h.active(&billing));
        h.clock.advance(31);
        h.rt.block_on(h.broker.follow_store()).unwrap();
        assert!(!h.active(&billing));
        let mut store = Store::open(&h.db).unwrap();
        let done: Vec<_> = store
            .audit_tail(20)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "policy.reevaluate")
            .map(|e| e.data)
            .collect();
        assert_eq!(done.len(), 2, "{done:?}");
        assert!(done[1].contains("\"generation\":2"), "{done:?}");
        // Recorded once: a later look finds nothing left to do.
        h.rt.block_on(h.broker.follow_store()).unwrap();
        assert_eq!(store.broker_policy_generation().unwrap(), (2, true));
        assert_eq!(store.audit_verify().unwrap().problem, None);
    }
}
