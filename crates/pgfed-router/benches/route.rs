//! Cost of the routing hook per statement, in the three situations that matter:
//! no managed tables at all, managed tables that the statement does not mention (the common case
//! once foreign tables exist), and a statement that mentions one (full parse).
//! Run: `cargo bench -p pgfed-router --bench route`.

use std::hint::black_box;
use std::time::Instant;

use pgfed_router::{DEFAULT_SEARCH_PATH, QualifiedName, Router};

fn measure(label: &str, router: &Router, sql: &str) {
    let iters = 200_000u32;
    for _ in 0..1000 {
        black_box(router.route(black_box(sql.as_bytes()), DEFAULT_SEARCH_PATH));
    }
    let start = Instant::now();
    for _ in 0..iters {
        black_box(router.route(black_box(sql.as_bytes()), DEFAULT_SEARCH_PATH));
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("{label:<58} {ns:>10.1} ns/statement");
}

fn main() {
    let pgbench = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";
    let empty = Router::new();
    let managed = Router::new();
    managed.set_managed((0..50).map(|i| QualifiedName::new("public", format!("remote_events_{i}"))));
    measure("no managed tables, pgbench -S statement", &empty, pgbench);
    measure("50 managed tables, pgbench -S statement (scan only)", &managed, pgbench);
    let join =
        "SELECT u.name, count(*) FROM users u JOIN remote_events_7 e ON e.uid = u.id WHERE u.id < 100 GROUP BY 1";
    measure("50 managed tables, statement naming one (full parse)", &managed, join);
}
