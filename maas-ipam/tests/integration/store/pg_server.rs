//! A throwaway PostgreSQL server for tests and benches: `initdb` in a temporary directory, a
//! server listening only on a Unix socket there, stopped and removed on drop.
//!
//! As root, `initdb` refuses to run, so the server runs as `nobody` (through `runuser` or
//! `setpriv`) in a directory given to it. When PostgreSQL is not installed, [`PgServer::start`]
//! says why and returns `None`, so that the tests depending on it pass without running; under
//! `CI=true` a missing PostgreSQL is a failure instead.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use maas_ipam::postgres::{Client, NoTls};

/// The unprivileged user the server runs as when the tests run as root.
const RUN_AS: &str = "nobody";

/// A running server. Dropping it stops the server (`pg_ctl stop -m fast`) and removes its
/// directory.
pub(crate) struct PgServer {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// `Some(user)` when the server's commands run as another user.
    run_as: Option<&'static str>,
    next_db: AtomicU32,
    /// `CREATE DATABASE` one at a time.
    admin: Mutex<()>,
}

impl PgServer {
    /// A server shared by the tests that run at the same time: started by the first, stopped
    /// when the last of them drops its handle (so a failing test still stops it).
    pub(crate) fn shared() -> Option<Arc<Self>> {
        static SHARED: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(server) = shared.upgrade() {
            return Some(server);
        }
        let server = Arc::new(Self::start()?);
        *shared = Arc::downgrade(&server);
        Some(server)
    }

    /// Starts a server of its own, or says why it cannot and returns `None`.
    pub(crate) fn start() -> Option<Self> {
        let Some(bindir) = find_bindir() else {
            return unavailable("PostgreSQL's initdb and pg_ctl were not found");
        };
        let run_as = if is_root() {
            if which("runuser").is_none() && which("setpriv").is_none() {
                return unavailable("running as root without runuser or setpriv");
            }
            Some(RUN_AS)
        } else {
            None
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("maas-ipam-pg-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the server's directory");
        let port = 40_000
            + u16::try_from(pid % 20_000).expect("port")
            + u16::try_from(n % 100).expect("port");
        let server = Self {
            dir,
            bindir,
            port,
            run_as,
            next_db: AtomicU32::new(0),
            admin: Mutex::new(()),
        };
        if let Some(user) = run_as {
            let uid = user_id(user).expect("the unprivileged user's id");
            std::os::unix::fs::chown(&server.dir, Some(uid), None)
                .expect("give the directory away");
        }
        // From here on, Drop stops whatever was started and removes the directory.
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "maas".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-sync".as_ref(),
            ],
            Duration::from_secs(120),
        );
        let options = format!(
            "-c listen_addresses='' -k {} -p {} -c fsync=on -c synchronous_commit=on \
             -c max_connections=40 -c shared_buffers=16MB",
            server.dir.display(),
            server.port
        );
        server.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                server.dir.join("server.log").as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "start".as_ref(),
            ],
            Duration::from_secs(60),
        );
        Some(server)
    }

    /// The URL of `database` on this server, through its Unix socket.
    pub(crate) fn url(&self, database: &str) -> String {
        format!(
            "postgresql://maas@/{database}?host={}&port={}",
            self.dir.display(),
            self.port
        )
    }

    /// A new, empty database; returns its URL.
    pub(crate) fn create_database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{n}");
        let _one = self
            .admin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut admin = Client::connect(&self.url("postgres"), NoTls).expect("connect as admin");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a database");
        self.url(&name)
    }

    /// Runs one of the server's programs as its user, waiting at most `limit`; panics with its
    /// output if it fails.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr], limit: Duration) {
        let log_path = self.dir.join(format!("{program}.out"));
        let log = File::create(&log_path).expect("create a log file");
        let bin = self.bindir.join(program);
        let mut cmd = match self.run_as {
            Some(user) if which("runuser").is_some() => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&bin);
                c
            }
            Some(user) => {
                let uid = user_id(user).expect("user id");
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} did not finish in {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !status.success() {
            let out = std::fs::read_to_string(&log_path).unwrap_or_default();
            let server_log =
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!("{program} failed ({status}):\n{out}\n{server_log}");
        }
    }

    /// The postmaster's process id, from its pid file.
    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.postmaster_pid().is_some() {
            let data = self.dir.join("data");
            let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run(
                    "pg_ctl",
                    &[
                        "-D".as_ref(),
                        data.as_os_str(),
                        "-m".as_ref(),
                        "fast".as_ref(),
                        "-w".as_ref(),
                        "-t".as_ref(),
                        "30".as_ref(),
                        "stop".as_ref(),
                    ],
                    Duration::from_secs(40),
                );
            }));
            if stopped.is_err()
                && let Some(pid) = self.postmaster_pid()
            {
                // By its process id, never by name.
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Prints why the PostgreSQL tests cannot run; `None`, or a panic under `CI=true`.
fn unavailable<T>(why: &str) -> Option<T> {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "PostgreSQL tests cannot run under CI: {why} (scripts/setup.sh installs postgresql)"
    );
    eprintln!("skipping the PostgreSQL tests: {why}");
    None
}

/// The directory holding `initdb` and `pg_ctl`: on the `PATH` (following a symlink such as
/// Debian's wrappers), else the newest under `/usr/lib/postgresql/*/bin`.
fn find_bindir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let initdb = std::fs::canonicalize(which("initdb")?).ok()?;
    let dir = initdb.parent()?.to_path_buf();
    has_both(&dir).then_some(dir)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The user id of `user`, from `/etc/passwd`.
fn user_id(user: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == user).then_some(())?;
            fields.nth(1)?.parse().ok()
        })
}
