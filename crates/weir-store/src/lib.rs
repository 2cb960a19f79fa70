//! Weir's durable state. Every change is a named command applied to a copy of the current
//! [`State`] through the model's validated operations; the new state is written to SQLite in one
//! transaction and only then becomes current. A command that fails validation changes nothing, in
//! memory or on disk, and a crash mid-write leaves the previous committed state.
//!
//! Layout of `DATA_DIR/weir.db`: `meta(key, value)` holds `schema_version`; `state(id = 1,
//! json)` the whole state; `commands(seq, at_ms, name, detail)` an append-only audit log.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use weir_model::{ModelError, State};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The change was rejected by validation (the caller's fault).
    #[error(transparent)]
    Invalid(#[from] ModelError),
    /// The database could not be read or written (the server's fault).
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The stored state is unreadable or from another schema version.
    #[error("state database {path}: {message}")]
    Corrupt {
        /// Database path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    Io {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// The durable state.
pub struct Store {
    state: State,
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, loading the committed state.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
        let path = dir.join("weir.db");
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn, path)
    }

    /// A store that lives in memory only (`weir up` until stacks persist), starting from `state`.
    pub fn in_memory(state: State) -> Result<Self, StoreError> {
        let mut s = Self::init(Connection::open_in_memory()?, PathBuf::from(":memory:"))?;
        s.state = state;
        Ok(s)
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Self, StoreError> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS commands (seq INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, name TEXT NOT NULL, detail TEXT NOT NULL);",
        )?;
        let corrupt = |message: String| StoreError::Corrupt { path: path.clone(), message };
        let version: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .optional()?;
        match version.as_deref().map(str::parse::<i64>) {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    params![SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(Ok(SCHEMA_VERSION)) => {}
            Some(other) => {
                return Err(corrupt(format!(
                    "schema version {other:?} is not {SCHEMA_VERSION}, which this build reads"
                )))
            }
        }
        let json: Option<String> =
            conn.query_row("SELECT json FROM state WHERE id = 1", [], |r| r.get(0)).optional()?;
        let state = match json {
            Some(j) => serde_json::from_str(&j)
                .map_err(|e| corrupt(format!("state does not parse: {e}")))?,
            None => State::default(),
        };
        Ok(Self { state, conn, path })
    }

    /// The current committed state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies the command `name` (with `detail` for the audit log): runs `change` on a copy of
    /// the state and, if it succeeds, commits the result durably before making it current.
    pub fn apply<T>(
        &mut self,
        name: &str,
        detail: &str,
        at_ms: u64,
        change: impl FnOnce(&mut State) -> Result<T, ModelError>,
    ) -> Result<T, StoreError> {
        let mut next = self.state.clone();
        let out = change(&mut next)?;
        if next != self.state {
            let json = serde_json::to_string(&next).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                message: format!("state does not serialize: {e}"),
            })?;
            let tx = self.conn.transaction()?;
            tx.execute("INSERT INTO state (id, json) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET json = excluded.json", params![json])?;
            tx.execute(
                "INSERT INTO commands (at_ms, name, detail) VALUES (?1, ?2, ?3)",
                params![at_ms as i64, name, detail],
            )?;
            tx.commit()?;
            self.state = next;
        }
        Ok(out)
    }

    /// Number of commands committed so far.
    pub fn command_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM commands", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::{LoadBalancerType, Scheme};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weir-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn committed_state_survives_reopen() {
        let dir = tmp("reopen");
        let arn = {
            let mut s = Store::open(&dir).unwrap();
            let arn = s
                .apply("CreateLoadBalancer", "web", 1, |st| {
                    st.create_load_balancer(
                        "web",
                        LoadBalancerType::Application,
                        Scheme::Internal,
                        &[],
                        1,
                    )
                })
                .unwrap();
            s.apply("ModifyLoadBalancerAttributes", "", 2, |st| {
                st.load_balancers
                    .get_mut(&arn)
                    .map(|lb| lb.attributes.set("idle_timeout.timeout_seconds", "7"))
                    .transpose()
            })
            .unwrap();
            arn
        };
        let s = Store::open(&dir).unwrap();
        let lb = s.state().load_balancer(&arn).unwrap();
        assert_eq!(lb.attributes.get("idle_timeout.timeout_seconds"), Some("7"));
        assert_eq!(s.command_count().unwrap(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rejected_commands_change_nothing() {
        let dir = tmp("reject");
        let mut s = Store::open(&dir).unwrap();
        s.apply("CreateLoadBalancer", "a", 1, |st| {
            st.create_load_balancer("a", LoadBalancerType::Application, Scheme::Internal, &[], 1)
        })
        .unwrap();
        let before = s.state().clone();
        let e = s
            .apply("CreateLoadBalancer", "a", 2, |st| {
                st.create_load_balancer(
                    "a",
                    LoadBalancerType::Application,
                    Scheme::Internal,
                    &[],
                    1,
                )
            })
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Invalid(ref m) if m.code == weir_model::ErrorCode::DuplicateLoadBalancerName)
        );
        assert_eq!(s.state(), &before);
        assert_eq!(s.command_count().unwrap(), 1);
        drop(s);
        assert_eq!(Store::open(&dir).unwrap().state(), &before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_schema_versions_are_refused() {
        let dir = tmp("schema");
        drop(Store::open(&dir).unwrap());
        let c = Connection::open(dir.join("weir.db")).unwrap();
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", []).unwrap();
        drop(c);
        let e = Store::open(&dir).unwrap_err();
        assert!(e.to_string().contains("schema version"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
