//! How long a commit to the Redis store takes, a site of one shard beside a site of
//! several, for commits of one row and of many people's rows (as a group commit gathers
//! them): a redis-server of its own (appendonly yes, appendfsync always) on a free loopback
//! port, with its data in a temporary directory.
//!
//!   cargo run --release -p switchboard-store --example commit_latency [-- SHARDS [COMMITS]]
//!
//! SHARDS (default 16) is the other layout's count; COMMITS (default 500) per row of the
//! table. Prints a Markdown table of the commits' p50 / p90 / p99 in microseconds.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard_store::tables::PRESENCE;
use switchboard_store::{RedisConfig, RedisStore, Store, Write};

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("SHARDS and COMMITS are numbers"))
        .collect();
    let shards = args.first().copied().unwrap_or(16);
    let commits = args.get(1).copied().unwrap_or(500) as usize;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("| shards | rows per commit | p50 µs | p90 µs | p99 µs |");
    println!("|---:|---:|---:|---:|---:|");
    for batch in [1, 5, 20, 50] {
        for count in [1, shards] {
            let store = RedisStore::open(RedisConfig {
                url: format!("redis://127.0.0.1:{port}/"),
                node: "bench".into(),
                prefix: format!("s{count}"),
                shards: count,
                ..RedisConfig::default()
            })
            .expect("opening the store");
            let mut took: Vec<u128> = (0..commits)
                .map(|i| {
                    let rows: Vec<Write> = (0..batch)
                        .map(|j| {
                            let who = format!("user{}", (i * batch + j) % 10_000);
                            Write::put(PRESENCE, who, vec![b'x'; 200])
                        })
                        .collect();
                    let t = Instant::now();
                    store.commit(&rows).expect("a commit");
                    t.elapsed().as_micros()
                })
                .collect();
            took.sort_unstable();
            let at = |q: usize| took[(took.len() * q / 100).min(took.len() - 1)];
            println!(
                "| {count} | {batch} | {} | {} | {} |",
                at(50),
                at(90),
                at(99)
            );
        }
    }
    let _ = redis.kill();
    let _ = redis.wait();
}
