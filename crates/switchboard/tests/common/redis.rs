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
}

impl Redis {
    pub fn start() -> Redis {
        super::require("redis-server");
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("switchboard-redis-")
                .tempdir()
                .expect("tempdir"),
            proc: None,
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

    /// The `[store]` keys of a node called `node` keeping its state here.
    pub fn store_keys(&self, node: &str) -> String {
        format!(
            "redis_url = \"redis://127.0.0.1:{}/\"\nnode = \"{node}\"\n",
            self.port
        )
    }
}
