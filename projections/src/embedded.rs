//! The embedded default: with no `DATABASE_URL`, Chronicle starts (or reuses) a private
//! PostgreSQL cluster in a project-local directory from the machine's PostgreSQL binaries, so one
//! command gives a working server. As root, the cluster runs as the `postgres` user (PostgreSQL
//! refuses to run as root). The cluster keeps running after the server stops, so the next start
//! is instant; `chronicle admin stop-db` stops it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The port of the embedded cluster, unless `CHRONICLE_EMBEDDED_PG_PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 54329;
/// The database Chronicle uses inside it.
pub const DATABASE: &str = "chronicle";

/// The embedded cluster's location and port.
#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    pub data_dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = vec![PathBuf::from("/usr/lib/postgresql/15/bin")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect();
        versions.sort();
        versions.reverse();
        candidates.extend(versions);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
        .context(
            "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and pg_config); \
             install them (`apt-get install postgresql-15`) or set DATABASE_URL",
        )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether the `postgres` user can reach (traverse into) `dir`, or the nearest existing
/// ancestor of it, since `dir` itself may not exist yet.
fn postgres_can_reach(dir: &Path) -> bool {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(parent) => probe = parent.to_path_buf(),
            None => return false,
        }
    }
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(&probe)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A directory the `postgres` user can reach, named by a short hash of the project directory
/// so that each checkout keeps its own cluster (short, since the cluster's Unix socket lives
/// there and socket paths are limited to about 100 bytes).
fn fallback_dir(wanted: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(wanted.display().to_string().as_bytes());
    PathBuf::from("/var/lib/chronicle")
        .join(hex::encode(&digest[..6]))
        .join("pg")
}

impl EmbeddedPostgres {
    /// The cluster under `<data_dir>/pg`.
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let port = match std::env::var("CHRONICLE_EMBEDDED_PG_PORT") {
            Ok(p) => p.parse().context("CHRONICLE_EMBEDDED_PG_PORT is not a port number")?,
            Err(_) => DEFAULT_PORT,
        };
        Self::with_port(data_dir, port)
    }

    /// The cluster under `<data_dir>/pg` on `port`, whatever the environment says.
    pub fn with_port(data_dir: &Path, port: u16) -> anyhow::Result<Self> {
        let wanted = std::path::absolute(data_dir.join("pg")).context("resolving the data directory")?;
        let data_dir = if is_root() && !postgres_can_reach(&wanted) {
            let fallback = fallback_dir(&wanted);
            tracing::warn!(
                wanted = %wanted.display(),
                using = %fallback.display(),
                "the postgres user cannot reach the project directory (a parent is private to root); \
                 keeping the embedded cluster in a directory it can reach"
            );
            fallback
        } else {
            wanted
        };
        Ok(Self {
            data_dir,
            port,
            bin: find_bin_dir()?,
        })
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let program = self.bin.join(tool);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .output()
            .with_context(|| format!("running {}", program.display()))
    }

    fn data(&self) -> String {
        self.data_dir.display().to_string()
    }

    /// Whether the cluster was ever created (`initdb` has run in its directory).
    pub fn exists(&self) -> bool {
        self.data_dir.join("PG_VERSION").exists()
    }

    /// Whether the cluster is running.
    pub fn is_running(&self) -> bool {
        self.data_dir.join("PG_VERSION").exists()
            && self
                .run("pg_ctl", &["-D", &self.data(), "status"])
                .map(|o| o.status.success())
                .unwrap_or(false)
    }

    /// Initializes the cluster if needed, starts it if stopped, creates the database if
    /// missing, and returns its URL.
    pub async fn ensure_running(&self) -> anyhow::Result<String> {
        let root = is_root();
        if !self.data_dir.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&self.data_dir).with_context(|| format!("creating {}", self.data_dir.display()))?;
            #[cfg(unix)]
            if root {
                // Parents we created must be traversable by the postgres user.
                use std::os::unix::fs::PermissionsExt;
                let mut parent = self.data_dir.parent();
                while let Some(dir) = parent {
                    if let Ok(meta) = std::fs::metadata(dir) {
                        let mode = meta.permissions().mode();
                        if mode & 0o001 == 0 && dir.starts_with("/var/lib/chronicle") {
                            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o011));
                        }
                    }
                    parent = dir.parent();
                }
            }
            if root {
                self.hand_to_postgres_user()?;
            }
            tracing::info!(dir = %self.data_dir.display(), "initializing the embedded PostgreSQL cluster");
            let out = self.run(
                "initdb",
                &[
                    "-D",
                    &self.data(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ],
            )?;
            if !out.status.success() {
                bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            let conf = format!(
                "\n# Chronicle's embedded cluster: loopback only.\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nmax_connections = 200\n",
                self.port,
                self.data()
            );
            let conf_path = self.data_dir.join("postgresql.conf");
            let mut existing = std::fs::read_to_string(&conf_path).context("reading postgresql.conf")?;
            existing.push_str(&conf);
            std::fs::write(&conf_path, existing).context("writing postgresql.conf")?;
        }
        if !self.is_running() {
            tracing::info!(port = self.port, "starting the embedded PostgreSQL cluster");
            let log = self.data_dir.join("server.log").display().to_string();
            let out = self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "-t", "60", "start"])?;
            if !out.status.success() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                bail!(
                    "the embedded PostgreSQL did not start (port {} in use? see {}): {}",
                    self.port,
                    log,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
        }
        let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .context("connecting to the embedded cluster")?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&admin)
            .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        Ok(format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port))
    }

    /// As root: the data directory belongs to `postgres`, and `postgres` must be able to reach
    /// it through every parent directory.
    fn hand_to_postgres_user(&self) -> anyhow::Result<()> {
        let out = Command::new("chown")
            .args(["postgres:postgres", &self.data()])
            .output()?;
        if !out.status.success() {
            bail!(
                "could not give {} to the postgres user: {}",
                self.data(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let reach = Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w", &self.data()])
            .status()?;
        if !reach.success() {
            bail!(
                "the postgres user cannot reach {} (a parent directory is private to root?); \
                 set CHRONICLE_DATA_DIR to a directory it can reach, e.g. /var/lib/chronicle",
                self.data()
            );
        }
        Ok(())
    }

    /// Stops the cluster.
    pub fn stop(&self) -> anyhow::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let out = self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "stop"])?;
        if !out.status.success() {
            bail!("pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }
}
