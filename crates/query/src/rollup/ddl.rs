//! Running `CREATE ROLLUP` and `DROP ROLLUP` (parsed in `sql.rs`), and reading back at
//! startup the rollups they declared.
//!
//! A rollup declared by SQL is a property of the engine's manifest, key
//! `rollup/"db"."name"`, value its canonical `CREATE ROLLUP` text, committed in one
//! manifest edit with its table's TTL before the statement answers: once it answers,
//! any crash keeps it (and a failed commit declares nothing). `DROP ROLLUP` removes
//! both the same way, then waits until the maintainer has stopped writing the rollup.

use bulkhead_engine::{Engine, SettingChange};

use super::RollupSpec;
use super::board::Origin;
use super::sql::{self, RollupStatement};
use crate::QueryEngine;
use crate::error::{QueryError, Result};
use crate::exec::QueryOutput;

/// Prefix of the manifest properties holding rollups declared by SQL.
const PROPERTY_PREFIX: &str = "rollup/";

fn property_key(db: &str, name: &str) -> String {
    format!("{PROPERTY_PREFIX}{}.{}", sql::quote(db), sql::quote(name))
}

/// Run a `CREATE ROLLUP` or `DROP ROLLUP` statement in the default database `db`.
pub(crate) async fn run(query: &QueryEngine, db: &str, statement: &str) -> Result<QueryOutput> {
    match sql::parse(statement, db)? {
        RollupStatement::Create {
            spec,
            if_not_exists,
        } => create_rollup(query, spec, if_not_exists).await,
        RollupStatement::Drop {
            database,
            name,
            if_exists,
        } => drop_rollup(query, &database, &name, if_exists).await,
    }
}

async fn create_rollup(
    query: &QueryEngine,
    spec: RollupSpec,
    if_not_exists: bool,
) -> Result<QueryOutput> {
    spec.validate()
        .map_err(|e| QueryError::Plan(format!("CREATE ROLLUP: {}", clause_message(&e))))?;
    let board = query.rollup_board();
    let _ddl = board.ddl.lock().await;
    let qualified = spec.qualified_name();
    if let Some((_, origin)) = board.find(&spec.database, &spec.name) {
        if if_not_exists {
            return crate::ddl::names_output("created", Vec::new());
        }
        let declared = match origin {
            Origin::Config => "in the config file ([[rollup]])",
            Origin::Sql => "by CREATE ROLLUP",
        };
        return Err(QueryError::DuplicateObject(format!(
            "CREATE ROLLUP: rollup `{qualified}` already exists (declared {declared}); \
             DROP ROLLUP it first to change it"
        )));
    }
    check_with(&board.specs(), &spec)
        .map_err(|e| QueryError::Plan(format!("CREATE ROLLUP: {}", clause_message(&e))))?;
    query
        .engine()
        .commit_settings(vec![
            SettingChange::Property {
                key: property_key(&spec.database, &spec.name),
                value: Some(sql::to_sql(&spec)),
            },
            // Forever unless RETENTION says otherwise, as for a config rollup.
            SettingChange::TableTtl {
                db: spec.database.clone(),
                table: spec.name.clone(),
                ttl: Some(spec.retention.unwrap_or_default()),
            },
        ])
        .await
        .map_err(|e| QueryError::Execution(format!("CREATE ROLLUP: storing `{qualified}`: {e}")))?;
    board.register(&spec, Origin::Sql);
    tracing::info!(rollup = %qualified, definition = %sql::to_sql(&spec), "rollup created");
    crate::ddl::names_output("created", vec![qualified])
}

async fn drop_rollup(
    query: &QueryEngine,
    db: &str,
    name: &str,
    if_exists: bool,
) -> Result<QueryOutput> {
    let board = query.rollup_board();
    let _ddl = board.ddl.lock().await;
    let qualified = format!("{db}.{name}");
    let spec = match board.find(db, name) {
        None if if_exists => return crate::ddl::names_output("dropped", Vec::new()),
        None => {
            return Err(QueryError::UndefinedObject(format!(
                "DROP ROLLUP: rollup `{qualified}` does not exist"
            )));
        }
        Some((_, Origin::Config)) => {
            return Err(QueryError::Plan(format!(
                "DROP ROLLUP: rollup `{qualified}` is declared in the config file; remove its \
                 [[rollup]] entry and restart"
            )));
        }
        Some((spec, Origin::Sql)) => spec,
    };
    // The declaration, its retention, and any range it had left to compute again.
    let mut changes = vec![
        SettingChange::Property {
            key: property_key(db, name),
            value: None,
        },
        SettingChange::TableTtl {
            db: db.to_string(),
            table: name.to_string(),
            ttl: None,
        },
    ];
    let engine = query.engine();
    let redo = engine.properties(&super::run::redo_prefix(&spec));
    let dirty = engine.properties(&super::run::dirty_prefix(&spec));
    changes.extend(
        redo.into_keys()
            .chain(dirty.into_keys())
            .map(|key| SettingChange::Property { key, value: None }),
    );
    query
        .engine()
        .commit_settings(changes)
        .await
        .map_err(|e| QueryError::Execution(format!("DROP ROLLUP: removing `{qualified}`: {e}")))?;
    if let Some(handle) = board.remove(db, name) {
        // A range being written finishes first; none starts after.
        let _stopped = handle.running.lock().await;
    }
    tracing::info!(rollup = %qualified, "rollup dropped (its table stays)");
    crate::ddl::names_output("dropped", vec![qualified])
}

/// A message of [`RollupSpec::validate`], with the config key turned into the clause.
fn clause_message(msg: &str) -> String {
    const CLAUSES: [(&str, &str); 4] = [
        ("from: ", "FROM: "),
        ("aggregates: ", "AGGREGATE: "),
        ("fields: ", "FIELDS: "),
        ("every: ", "EVERY: "),
    ];
    for (key, clause) in CLAUSES {
        if let Some(rest) = msg.strip_prefix(key) {
            return format!("{clause}{rest}");
        }
    }
    msg.to_string()
}

/// `new` beside the rollups already declared: a table of its own, and no cycle.
pub(crate) fn check_with(
    existing: &[RollupSpec],
    new: &RollupSpec,
) -> std::result::Result<(), String> {
    if existing
        .iter()
        .any(|s| s.qualified_name() == new.qualified_name())
    {
        return Err(format!(
            "name: another rollup writes the table `{}`",
            new.qualified_name()
        ));
    }
    if existing
        .iter()
        .any(|s| s.database == new.database && s.name == new.source && s.source == new.name)
    {
        return Err(format!(
            "from: `{}` is a rollup of this one (a cycle)",
            new.source
        ));
    }
    Ok(())
}

/// The rollups declared by SQL, as the manifest keeps them.
pub(crate) fn stored(engine: &Engine) -> Result<Vec<RollupSpec>> {
    let mut out = Vec::new();
    for (key, text) in engine.properties(PROPERTY_PREFIX) {
        let bad = |e: String| {
            QueryError::Plan(format!(
                "the rollup stored in the manifest as `{key}` cannot be read back \
                 ({text}): {e}"
            ))
        };
        match sql::parse(&text, "") {
            Ok(RollupStatement::Create { spec, .. }) => {
                spec.validate().map_err(bad)?;
                out.push(spec);
            }
            Ok(RollupStatement::Drop { .. }) => return Err(bad("not a CREATE ROLLUP".into())),
            Err(e) => return Err(bad(e.to_string())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, source: &str) -> RollupSpec {
        match sql::parse(
            &format!("CREATE ROLLUP {name} FROM {source} AGGREGATE max EVERY 1m"),
            "db",
        ) {
            Ok(RollupStatement::Create { spec, .. }) => spec,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_new_rollup_needs_its_own_table_and_no_cycle() {
        let existing = [spec("cpu_1m", "cpu")];
        assert_eq!(check_with(&existing, &spec("cpu_1h", "cpu")), Ok(()));
        assert_eq!(check_with(&existing, &spec("cpu_1h", "cpu_1m")), Ok(()));
        let err = check_with(&existing, &spec("cpu_1m", "mem")).unwrap_err();
        assert!(
            err.contains("another rollup writes the table `db.cpu_1m`"),
            "{err}"
        );
        let err = check_with(&existing, &spec("cpu", "cpu_1m")).unwrap_err();
        assert_eq!(
            clause_message(&err),
            "FROM: `cpu_1m` is a rollup of this one (a cycle)"
        );
    }

    #[test]
    fn config_keys_become_clauses() {
        assert_eq!(
            clause_message("every: must be positive"),
            "EVERY: must be positive"
        );
        assert_eq!(clause_message("aggregates: x"), "AGGREGATE: x");
        assert_eq!(clause_message("name: x"), "name: x");
    }

    #[test]
    fn property_keys_are_unambiguous() {
        assert_ne!(property_key("a.b", "c"), property_key("a", "b.c"));
        assert_eq!(property_key("db", "x\"y"), "rollup/\"db\".\"x\"\"y\"");
    }
}
