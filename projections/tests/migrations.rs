//! Migrations never change once they have landed: every migration the migrator carries has its
//! SHA-384 (the checksum sqlx records in `_sqlx_migrations`) written in
//! `migrations/landed.sha384`, and the file's figure must match. A database that applied a
//! migration refuses to start when the file later differs, so an edit here would break every
//! running deployment; change the schema with a new migration instead.

use std::collections::BTreeMap;

use chronicle_projections::MIGRATOR;

const LANDED: &str = include_str!("../../migrations/landed.sha384");

fn landed() -> BTreeMap<i64, String> {
    LANDED
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.split_whitespace();
            let version = fields.next().and_then(|v| v.parse().ok());
            let checksum = fields.next().map(str::to_string);
            match (version, checksum) {
                (Some(v), Some(c)) => (v, c),
                _ => panic!("migrations/landed.sha384: malformed line {line:?}"),
            }
        })
        .collect()
}

#[test]
fn every_landed_migration_is_unchanged_and_every_migration_is_recorded() {
    let landed = landed();
    let mut problems = Vec::new();
    for migration in MIGRATOR.iter() {
        let checksum = hex::encode(&migration.checksum);
        let line = format!(
            "{} {checksum} {}_{}.sql",
            migration.version,
            migration.version,
            migration.description.replace(' ', "_")
        );
        match landed.get(&migration.version) {
            Some(recorded) if *recorded == checksum => {}
            Some(_) => problems.push(format!(
                "migration {} ({}) was edited after it landed; restore it and add a new migration",
                migration.version, migration.description
            )),
            None => problems.push(format!(
                "migration {} is not recorded; add the line: {line}",
                migration.version
            )),
        }
    }
    for version in landed.keys() {
        if !MIGRATOR.iter().any(|m| m.version == *version) {
            problems.push(format!(
                "migration {version} is recorded as landed but its file is gone"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
