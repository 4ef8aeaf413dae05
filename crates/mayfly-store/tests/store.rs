//! The store on both real backends: a SQLite file and the PostgreSQL
//! server on 127.0.0.1:5432 (a fresh database per test).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use mayfly_store::{
    CopyRecord, OwnerClaim, OwnerSource, Ownership, ScanRecord, SecretFilter, SecretStatus, Store,
    StoreError,
};

/// The store applies whatever ownership rule it is given; this one is
/// `mayfly-inventory`'s (the strongest claim wins, ties are unclear),
/// written here because the inventory crate depends on the store.
fn strongest_claim(claims: &[OwnerClaim]) -> Ownership {
    let Some(first) = claims.first() else {
        return Ownership::Unclaimed;
    };
    let owners: Vec<&OwnerClaim> = claims.iter().filter(|c| c.source == first.source).collect();
    if owners.len() == 1 {
        Ownership::Owned {
            owner: first.owner.clone(),
            source: first.source,
        }
    } else {
        Ownership::Disputed {
            claimants: owners.iter().map(|c| c.owner.clone()).collect(),
        }
    }
}

/// A PostgreSQL database that exists for one test.
struct PgDatabase {
    name: String,
}

impl PgDatabase {
    fn new() -> PgDatabase {
        let name = format!(
            "mayfly_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut admin = postgres::Client::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            postgres::NoTls,
        )
        .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); .ci/run starts it");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        PgDatabase { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            postgres::NoTls,
        ) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Runs `test` against a fresh SQLite file and a fresh PostgreSQL database.
fn on_both(test: impl Fn(&dyn Fn() -> Store)) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("inventory.db")
        .to_string_lossy()
        .into_owned();
    test(&|| Store::open(&path).unwrap());
    let pg = PgDatabase::new();
    let url = pg.url();
    test(&|| Store::open(&url).unwrap());
}

fn copy(fingerprint: &str, path: &str, line: i64, surface: &str) -> CopyRecord {
    CopyRecord {
        fingerprint: fingerprint.into(),
        rule_id: "github-pat-classic".into(),
        provider: "GitHub".into(),
        severity: "high".into(),
        path: path.into(),
        host: "laptop".into(),
        root: None,
        remote: None,
        line,
        column: 7,
        surface: surface.into(),
        commit_id: None,
        author: None,
        author_email: None,
        committed_at: None,
        owner_claim: None,
    }
}

const A: &str = "aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";
const B: &str = "bbbb1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";

#[test]
fn merge_rescan_gone_and_second_source() {
    on_both(|open| {
        let mut store = open();
        let first = ScanRecord {
            source: "files:laptop:/repo".into(),
            at: 1_000,
            copies: vec![
                copy(A, ".env", 1, "env"),
                copy(A, "src/app.py", 3, "code"),
                copy(B, "ci.yml", 9, "ci"),
            ],
        };
        let summary = store.save_scan(&first, strongest_claim).unwrap();
        assert_eq!(
            (
                summary.new_secrets,
                summary.new_locations,
                summary.gone_locations
            ),
            (2, 3, 0)
        );

        // The same tree again: only last_seen moves.
        let again = ScanRecord {
            at: 2_000,
            ..first.clone()
        };
        let summary = store.save_scan(&again, strongest_claim).unwrap();
        assert_eq!(
            (
                summary.new_secrets,
                summary.known_secrets,
                summary.new_locations,
                summary.gone_locations
            ),
            (0, 2, 0, 0)
        );
        let rows = store.list_secrets(&SecretFilter::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].fingerprint.as_str(),
                rows[0].copies,
                rows[0].first_seen,
                rows[0].last_seen
            ),
            (A, 2, 1_000, 2_000)
        );
        assert_eq!(rows[0].surfaces, "code,env");

        // A copy disappears: marked gone, not deleted.
        let later = ScanRecord {
            at: 3_000,
            copies: vec![copy(A, ".env", 1, "env"), copy(B, "ci.yml", 9, "ci")],
            ..first.clone()
        };
        assert_eq!(
            store
                .save_scan(&later, strongest_claim)
                .unwrap()
                .gone_locations,
            1
        );
        let detail = store.secret(&A[..10]).unwrap();
        assert_eq!(detail.locations.len(), 2);
        assert_eq!(
            detail
                .locations
                .iter()
                .filter(|l| l.gone_at == Some(3_000))
                .count(),
            1
        );
        assert_eq!(detail.secret.copies, 1);

        // Another machine's scan adds copies without touching the first source's.
        let other = ScanRecord {
            source: "host:workstation:/home/dev".into(),
            at: 4_000,
            copies: vec![copy(A, "/home/dev/.claude.json", 4, "mcp-config")],
        };
        let summary = store.save_scan(&other, strongest_claim).unwrap();
        assert_eq!((summary.new_locations, summary.gone_locations), (1, 0));
        let detail = store.secret(A).unwrap();
        assert_eq!(detail.secret.copies, 2);
        let filtered = store
            .list_secrets(&SecretFilter {
                surface: Some("mcp-config".into()),
                ..SecretFilter::default()
            })
            .unwrap();
        assert_eq!(filtered.len(), 1);
        assert_eq!(
            store
                .list_secrets(&SecretFilter {
                    min_copies: Some(2),
                    ..SecretFilter::default()
                })
                .unwrap()
                .len(),
            1
        );
    });
}

#[test]
fn owners_resolution_and_reopening() {
    on_both(|open| {
        let mut store = open();
        let scan = ScanRecord {
            source: "files:ci:/repo".into(),
            at: 100,
            copies: vec![copy(A, ".env", 1, "env"), copy(B, "x.py", 2, "code")],
        };
        store.save_scan(&scan, strongest_claim).unwrap();
        assert_eq!(
            store
                .list_secrets(&SecretFilter {
                    unowned: true,
                    ..SecretFilter::default()
                })
                .unwrap()
                .len(),
            2
        );
        store
            .set_owner(&A[..12], Some("team-payments"), strongest_claim)
            .unwrap();
        let owned = store
            .list_secrets(&SecretFilter {
                owner: Some("team-payments".into()),
                ..SecretFilter::default()
            })
            .unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(
            owned[0].owner_source.map(OwnerSource::as_str),
            Some("explicit")
        );

        store
            .resolve(
                A,
                SecretStatus::Rotated,
                "rotated in the GitHub console",
                150,
            )
            .unwrap();
        assert_eq!(
            store.list_secrets(&SecretFilter::default()).unwrap().len(),
            1
        );
        assert_eq!(
            store
                .list_secrets(&SecretFilter {
                    include_resolved: true,
                    ..SecretFilter::default()
                })
                .unwrap()
                .len(),
            2
        );

        // The rotated secret shows up again: reopened and flagged.
        let summary = store
            .save_scan(
                &ScanRecord {
                    at: 200,
                    ..scan.clone()
                },
                strongest_claim,
            )
            .unwrap();
        assert_eq!(summary.reopened, vec![A.to_owned()]);
        let detail = store.secret(A).unwrap();
        assert_eq!(detail.secret.status, SecretStatus::Open);
        assert!(detail.secret.reopened);
        let statuses: Vec<SecretStatus> = detail.history.iter().map(|h| h.status).collect();
        assert_eq!(statuses, vec![SecretStatus::Rotated, SecretStatus::Open]);

        assert!(matches!(
            store.secret("ffff0000ffff"),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(store.secret("xyz"), Err(StoreError::NotFound(_))));
        store.set_owner(A, None, strongest_claim).unwrap();
        assert!(store.secret(A).unwrap().secret.owner.is_none());
    });
}

#[test]
fn refuses_foreign_and_newer_stores() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    let content = "this is not a database, just text that is long enough to have a header";
    std::fs::write(&text, content).unwrap();
    let err = Store::open(&text.to_string_lossy()).unwrap_err();
    assert!(
        matches!(err, StoreError::Foreign { .. } | StoreError::Open { .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        content,
        "the foreign file must stay untouched"
    );

    let other = dir.path().join("other.db");
    rusqlite_free_sqlite(&other);
    let err = Store::open(&other.to_string_lossy()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");

    let newer = dir.path().join("newer.db");
    drop(Store::open(&newer.to_string_lossy()).unwrap());
    bump_version(&newer);
    let err = Store::open(&newer.to_string_lossy()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

#[test]
fn concurrent_saves_lose_nothing() {
    on_both(|open| {
        drop(open());
        std::thread::scope(|scope| {
            for worker in 0..4i64 {
                let mut store = open();
                scope.spawn(move || {
                    for round in 0..5i64 {
                        let fp = format!("{worker:02}{round:02}{}", &A[4..]);
                        let scan = ScanRecord {
                            source: format!("files:host{worker}:/repo"),
                            at: 10 + round,
                            copies: vec![
                                copy(&fp, "a.env", round + 1, "env"),
                                copy(A, "shared.env", 1, "env"),
                            ],
                        };
                        store.save_scan(&scan, strongest_claim).unwrap();
                    }
                });
            }
        });
        let mut store = open();
        let all = store.list_secrets(&SecretFilter::default()).unwrap();
        assert_eq!(all.len(), 21);
    });
}

fn rusqlite_free_sqlite(path: &std::path::Path) {
    // A SQLite database of another application: one unrelated table.
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table notes (x text)'); c.commit()")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn bump_version(path: &std::path::Path) {
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('update mayfly_schema set version = 99'); c.commit()")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn owners_derive_from_claims_and_conflicts_make_ownership_unclear() {
    use mayfly_store::OwnerSource;
    on_both(|open| {
        let mut store = open();
        let claimed = |fp: &str, path: &str, owner: &str, source: OwnerSource| CopyRecord {
            owner_claim: Some(OwnerClaim {
                owner: owner.to_owned(),
                source,
            }),
            ..copy(fp, path, 1, "code")
        };
        let scan = ScanRecord {
            source: "files:laptop:/repo".into(),
            at: 10,
            copies: vec![
                claimed(A, "billing/a.py", "team-billing", OwnerSource::OwnersFile),
                claimed(
                    A,
                    "x/b.py",
                    "alice <alice@acme.test>",
                    OwnerSource::CommitAuthor,
                ),
                claimed(B, "one.py", "@acme/one", OwnerSource::Codeowners),
                claimed(B, "two.py", "@acme/two", OwnerSource::Codeowners),
            ],
        };
        store.save_scan(&scan, strongest_claim).unwrap();
        let a = store.secret(A).unwrap().secret;
        assert_eq!(
            (a.owner.as_deref(), a.owner_source.map(OwnerSource::as_str)),
            (Some("team-billing"), Some("owners-file"))
        );
        let b = store.secret(B).unwrap().secret;
        assert_eq!(b.owner, None);
        assert_eq!(b.owner_conflict.as_deref(), Some("@acme/one, @acme/two"));
        let unclear = store
            .list_secrets(&SecretFilter {
                unowned: true,
                ..SecretFilter::default()
            })
            .unwrap();
        assert_eq!(unclear.len(), 1);

        // An explicit owner wins over claims and survives rescans.
        store
            .set_owner(B, Some("team-platform"), strongest_claim)
            .unwrap();
        store
            .save_scan(
                &ScanRecord {
                    at: 20,
                    ..scan.clone()
                },
                strongest_claim,
            )
            .unwrap();
        let b = store.secret(B).unwrap().secret;
        assert_eq!(
            (b.owner.as_deref(), b.owner_source.map(OwnerSource::as_str)),
            (Some("team-platform"), Some("explicit"))
        );
        // Clearing it falls back to the claims.
        store.set_owner(B, None, strongest_claim).unwrap();
        assert!(store.secret(B).unwrap().secret.owner_conflict.is_some());
    });
}

#[test]
fn plan_input_streams_open_secrets_with_their_forbidden_copies() {
    const C: &str = "cccc1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa7777bbbb8888";
    on_both(|open| {
        let mut store = open();
        let scan = ScanRecord {
            source: "files:laptop:/home".into(),
            at: 100,
            copies: vec![
                copy(C, "z.jsonl", 4, "prompt-log"),
                copy(A, "b.jsonl", 2, "prompt-log"),
                copy(A, ".mcp.json", 3, "mcp-config"),
                copy(A, "a.jsonl", 9, "prompt-log"),
                copy(A, "app.py", 1, "code"),
                copy(B, "ci.yml", 5, "ci"),
                copy(C, "m.json", 1, "mcp-config"),
            ],
        };
        store.save_scan(&scan, strongest_claim).unwrap();
        // A resolved secret has no plan, though its copies are still there.
        store
            .resolve(C, SecretStatus::Revoked, "revoked", 150)
            .unwrap();
        let surfaces = vec!["prompt-log".to_owned(), "mcp-config".to_owned()];
        let mut seen = Vec::new();
        let count = store
            .for_each_open_secret(&surfaces, &mut |secret, copies| {
                let copies: Vec<String> = copies
                    .iter()
                    .map(|c| format!("{}:{}@{}", c.path, c.line, c.surface))
                    .collect();
                seen.push((secret.fingerprint, secret.copies, copies));
            })
            .unwrap();
        assert_eq!(count, 2);
        assert_eq!(
            seen,
            vec![
                (
                    A.to_owned(),
                    4,
                    vec![
                        ".mcp.json:3@mcp-config".to_owned(),
                        "a.jsonl:9@prompt-log".to_owned(),
                        "b.jsonl:2@prompt-log".to_owned(),
                    ]
                ),
                (B.to_owned(), 1, vec![]),
            ]
        );
        let collected = store.open_secrets_with_copies_on(&surfaces).unwrap();
        assert_eq!(collected.len(), 2);
        assert_eq!(collected[0].1.len(), 3);
    });
}

#[test]
fn a_secret_in_custody_stays_there_when_found_again_and_is_planned_while_copies_remain() {
    on_both(|open| {
        let mut store = open();
        let scan = ScanRecord {
            source: "files:laptop:/repo".into(),
            at: 100,
            copies: vec![copy(A, ".env", 1, "env"), copy(A, "notes.md", 2, "code")],
        };
        store.save_scan(&scan, strongest_claim).unwrap();
        store
            .record_custody(A, "github", "moved into custody as github", 110)
            .unwrap();
        let detail = store.secret(A).unwrap();
        assert_eq!(detail.secret.status, SecretStatus::InCustody);
        assert_eq!(detail.secret.custody_entry.as_deref(), Some("github"));
        // The note is still there: found again, it stays in custody (not reopened).
        let summary = store
            .save_scan(
                &ScanRecord {
                    at: 200,
                    copies: vec![copy(A, "notes.md", 2, "code")],
                    ..scan.clone()
                },
                strongest_claim,
            )
            .unwrap();
        assert!(summary.reopened.is_empty());
        let detail = store.secret(A).unwrap();
        assert_eq!(detail.secret.status, SecretStatus::InCustody);
        assert_eq!(detail.secret.copies, 1);
        // It is planned while a copy remains outside custody.
        let mut planned = Vec::new();
        store
            .for_each_open_secret(&["code".into()], &mut |secret, copies| {
                planned.push((secret.fingerprint, secret.custody_entry, copies.len()));
            })
            .unwrap();
        assert_eq!(planned, vec![(A.to_owned(), Some("github".to_owned()), 1)]);
        // Resolving it later keeps the entry it went to.
        store
            .resolve(A, SecretStatus::Rotated, "rotated at GitHub", 300)
            .unwrap();
        let detail = store.secret(A).unwrap();
        assert_eq!(detail.secret.status, SecretStatus::Rotated);
        assert_eq!(detail.secret.custody_entry.as_deref(), Some("github"));
        assert_eq!(detail.history.len(), 2);
    });
}
