//! The inventory at scale: merge a scan of 100,000 findings into an
//! inventory of 1,000,000 locations, then list and plan. Run with
//! `cargo run --release -p mayfly-inventory --example inventory_scale -- [DB]`
//! (a SQLite path, default a temporary file, or a postgres:// URL).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::Instant;

/// The same allocator as the `mayfly` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mayfly_inventory::decide_ownership;
use mayfly_inventory::govern::{Governance, plan_secret};
use mayfly_store::{CopyRecord, OwnerClaim, OwnerSource, ScanRecord, SecretFilter, Store};

const SOURCES: usize = 10;
const COPIES_PER_SCAN: usize = 100_000;
const COPIES_PER_SECRET: usize = 5;
const SURFACES: [&str; 6] = [
    "code",
    "env",
    "ci",
    "shared-config",
    "prompt-log",
    "mcp-config",
];

fn fingerprint(n: usize) -> String {
    format!(
        "{:064x}",
        (n as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
    )
}

fn scan(source: usize, at: i64, shift: usize) -> ScanRecord {
    let copies = (0..COPIES_PER_SCAN)
        .map(|i| {
            let secret = source * COPIES_PER_SCAN / COPIES_PER_SECRET + i / COPIES_PER_SECRET;
            CopyRecord {
                fingerprint: fingerprint(secret),
                rule_id: "generic-token".into(),
                provider: if secret.is_multiple_of(3) {
                    "GitHub".into()
                } else {
                    "OpenAI".into()
                },
                severity: "high".into(),
                path: format!("/src/repo{source}/dir{}/file{}.py", i % 97, i),
                host: "bench".into(),
                root: Some(format!("/src/repo{source}")),
                remote: None,
                line: (i % 400 + shift) as i64 + 1,
                column: 9,
                surface: SURFACES
                    .get(i % SURFACES.len())
                    .copied()
                    .unwrap_or("code")
                    .into(),
                commit_id: None,
                author: None,
                author_email: None,
                committed_at: None,
                owner_claim: (i % 4 != 0).then(|| OwnerClaim {
                    owner: format!("team-{}", secret % 50),
                    source: OwnerSource::Codeowners,
                }),
            }
        })
        .collect();
    ScanRecord {
        source: format!("files:bench:/src/repo{source}"),
        at,
        copies,
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let target = std::env::args().nth(1).unwrap_or_else(|| {
        dir.path()
            .join("inventory.db")
            .to_string_lossy()
            .into_owned()
    });
    let mut store = Store::open(&target).unwrap();
    let started = Instant::now();
    for source in 0..SOURCES {
        store
            .save_scan(&scan(source, 1_700_000_000, 0), decide_ownership)
            .unwrap();
    }
    println!(
        "built inventory: {} locations in {} sources in {:.1} s",
        SOURCES * COPIES_PER_SCAN,
        SOURCES,
        started.elapsed().as_secs_f64()
    );

    // A rescan of one source where every line moved: 100,000 findings,
    // 100,000 new locations, 100,000 gone.
    let rescan = scan(0, 1_700_100_000, 1);
    let t = Instant::now();
    let summary = store.save_scan(&rescan, decide_ownership).unwrap();
    println!(
        "merge of {} findings into {} locations: {:.2} s ({} new, {} gone)",
        COPIES_PER_SCAN,
        SOURCES * COPIES_PER_SCAN,
        t.elapsed().as_secs_f64(),
        summary.new_locations,
        summary.gone_locations
    );

    // `inventory list` and `govern plan` each run in a new process: time
    // them on a fresh connection, whose page cache is empty.
    drop(store);
    let mut store = Store::open(&target).unwrap();
    let t = Instant::now();
    let listed = store.list_secrets(&SecretFilter::default()).unwrap();
    println!(
        "inventory list: {} secrets in {:.2} s",
        listed.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let unclear = store
        .list_secrets(&SecretFilter {
            unowned: true,
            min_copies: Some(2),
            ..SecretFilter::default()
        })
        .unwrap();
    println!(
        "inventory list --unclear --min-copies 2: {} secrets in {:.2} s",
        unclear.len(),
        t.elapsed().as_secs_f64()
    );

    drop(store);
    let mut store = Store::open(&target).unwrap();
    let t = Instant::now();
    let governance = Governance::default();
    let mut with_actions = 0;
    let mut copies_to_delete = 0;
    let considered = store
        .for_each_open_secret(
            &governance.forbidden_surface_names(),
            &mut |secret, copies| {
                if let Some(plan) = plan_secret(&governance, &secret, copies, 1_700_200_000) {
                    with_actions += 1;
                    copies_to_delete += plan.actions.iter().filter(|a| a.copy.is_some()).count();
                }
            },
        )
        .unwrap();
    println!(
        "govern plan: {considered} secrets, {with_actions} with actions, {copies_to_delete} copies to delete, in {:.2} s",
        t.elapsed().as_secs_f64()
    );
}
