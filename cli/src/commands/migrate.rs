use std::process::ExitCode;

use anyhow::Result;

use super::Global;

pub async fn run(g: &Global) -> Result<ExitCode> {
    let db = super::open_db(g, herald::db::Pool::OnDemand, "herald migrate").await?;
    let pending = herald::db::migrate(&db).await?;
    if pending == 0 {
        println!("schema is up to date");
    } else {
        println!("applied {pending} migration(s)");
    }
    Ok(ExitCode::SUCCESS)
}
