//! A fresh database per test: SQLite in a temp file, or a uniquely named
//! PostgreSQL database on 127.0.0.1:5432 that is dropped afterwards.
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Admin URL of the PostgreSQL server the tests create databases on.
pub fn pg_admin_url() -> String {
    std::env::var("HERALD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new, empty, migrated database.
    pub async fn new(backend: Backend) -> TestDb {
        let db = Self::empty(backend).await;
        let conn = db.connect().await;
        herald::db::migrate(&conn)
            .await
            .expect("migrate test database");
        conn.close().await.ok();
        db
    }

    /// A new database without Herald's tables.
    pub async fn empty(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("herald.db").display()
                );
                TestDb {
                    backend,
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(pg_admin_url()).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is not reachable at {} ({e}); start it (scripts/setup.sh) or set HERALD_TEST_PG_URL",
                        pg_admin_url()
                    )
                });
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                // The admin URL's parameters (`?sslmode=disable`) carry over.
                let base = pg_admin_url();
                let (base, params) = match base.split_once('?') {
                    Some((b, p)) => (b.to_string(), format!("?{p}")),
                    None => (base, String::new()),
                };
                let url = match base.rfind('/') {
                    Some(i) => format!("{}/{name}{params}", &base[..i]),
                    None => base,
                };
                TestDb {
                    backend,
                    url,
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        // Named, so that a test can drop the processes' connections and keep its own.
        herald::db::connect_with(&self.url, herald::db::Pool::OnDemand, "test harness")
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside any runtime guarantee: use a private one on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(admin) = Database::connect(pg_admin_url()).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            }
        })
        .join();
    }
}

/// Run a test body on both backends: `both_backends!(name, async_fn)` makes
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::db::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::db::Backend::Postgres).await
            }
        }
        )*
    };
}
