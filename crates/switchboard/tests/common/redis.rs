//! A Redis server for the shared store's tests: Debian's `redis-server` on a loopback port
//! of its own, with its own data directory, fsyncing every write (as the store asks).

use super::{free_port, wait_until, Proc};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

pub struct Redis {
    pub port: u16,
    pub dir: tempfile::TempDir,
    proc: Option<Proc>,
    settings: Vec<String>,
}

/// Where nodes keep their state: one Redis server or a cluster of them.
pub trait Site {
    /// The `[store]` keys of a node called `node` keeping its state here.
    fn store_keys(&self, node: &str) -> String;
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// A server with more settings (`--name value` pairs).
    fn start_with(settings: &[&str]) -> Redis {
        super::require("redis-server");
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("switchboard-redis-")
                .tempdir()
                .expect("tempdir"),
            proc: None,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(&self.settings)
            .arg("--dir")
            .arg(self.dir.path());
        let log = self.dir.path().join("redis.log");
        self.proc = Some(Proc::spawn("redis-server", &mut cmd, log, false));
        let port = self.port;
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        })
        .expect("redis-server did not start");
    }

    /// `kill -9`, then the same server again, on its port and data.
    pub fn restart(&mut self) {
        self.proc.take();
        self.spawn();
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Site for Redis {
    fn store_keys(&self, node: &str) -> String {
        format!(
            "redis_url = \"redis://127.0.0.1:{}/\"\nnode = \"{node}\"\n",
            self.port
        )
    }
}

/// A Redis Cluster of three masters (no replicas) on loopback, each fsyncing every write;
/// the site is laid out in six shards, two a master.
pub struct RedisCluster {
    pub masters: Vec<Redis>,
}

impl RedisCluster {
    pub const SHARDS: u32 = 6;

    pub fn start() -> RedisCluster {
        let cluster = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
        let masters: Vec<Redis> = (0..3).map(|_| Redis::start_with(&cluster)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(masters.iter().map(|m| format!("127.0.0.1:{}", m.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            masters
                .iter()
                .all(|m| m.cli(&["cluster", "info"]).contains("cluster_state:ok"))
                .then_some(())
        })
        .expect("the Redis Cluster did not come up");
        RedisCluster { masters }
    }

    /// The keys of the site's shards each master holds.
    pub fn keys_per_master(&self) -> Vec<usize> {
        self.masters
            .iter()
            .map(|m| m.cli(&["--scan", "--pattern", "{sb:*}:*"]).lines().count())
            .collect()
    }
}

impl Site for RedisCluster {
    /// Nodes are pointed at different masters: each finds every shard's master itself.
    fn store_keys(&self, node: &str) -> String {
        let at = node.bytes().map(usize::from).sum::<usize>() % self.masters.len();
        format!(
            "redis_url = \"redis://127.0.0.1:{}/\"\nnode = \"{node}\"\nredis_shards = {}\n",
            self.masters[at].port,
            Self::SHARDS
        )
    }
}
