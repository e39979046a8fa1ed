//! Rewriting PostgreSQL clients' SQL into what DataFusion plans: whole-fragment
//! replacements before parsing, then AST passes after `datafusion-pg-catalog`'s own.

use super::*;

pub(super) fn rewrite(
    parser: &PostgresCompatibilityParser,
    replacements: &[(Vec<Token>, String)],
    columns: &TableFactor,
    visible: &Expr,
    sql: &str,
) -> Option<Statement> {
    let sql = substitute(sql, replacements);
    let mut statements = parser.parse(&sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    let mut statement = statements.pop()?;
    let _ = statement.visit(&mut RegprocZero);
    let _ = statement.visit(&mut PgColumns(columns));
    if sql.to_ascii_lowercase().contains("pg_catalog") {
        let _ = statement.visit(&mut EmptyCatalogSubqueries);
        let _ = statement.visit(&mut TableIsVisible(visible));
        let _ = statement.visit(&mut QuotedArrayElements);
        let _ = statement.visit(&mut AggregateScalarSubqueries);
    }
    Some(statement)
}

/// `pg_table_is_visible(oid)`: whether the relation is in the search path, which for
/// a Bulkhead session is its database (and `pg_catalog`). The call becomes
/// `oid IN (<relations of those schemas>)`, so `\dt` and SQLAlchemy's
/// `get_table_names()` list the session's database, as PostgreSQL lists the schemas on
/// its search path.
pub(super) struct TableIsVisible<'a>(&'a Expr);

pub(super) const TABLE_IS_VISIBLE_SQL: &str = "NULL IN (SELECT bh_c.oid FROM pg_catalog.pg_class bh_c \
    JOIN pg_catalog.pg_namespace bh_n ON bh_c.relnamespace = bh_n.oid \
    WHERE bh_n.nspname IN (current_schema(), 'pg_catalog'))";

pub(super) fn table_is_visible_expr() -> Expr {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(TABLE_IS_VISIBLE_SQL)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or_else(|e| unreachable!("TABLE_IS_VISIBLE_SQL is a constant expression: {e}"))
}

impl VisitorMut for TableIsVisible<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr
            && f.name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_table_is_visible"))
            && let FunctionArguments::List(list) = &f.args
            && list.args.len() == 1
            && let FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) = &list.args[0]
        {
            let arg = arg.clone();
            let mut replacement = self.0.clone();
            if let Expr::InSubquery { expr: target, .. } = &mut replacement {
                **target = arg;
            }
            *expr = Expr::Nested(Box::new(replacement));
        }
        ControlFlow::Continue(())
    }
}

/// `x = ANY('{"p", "r"}')`: the library splits the array literal on commas but keeps
/// the elements' double quotes; they are removed here (catalog queries only).
pub(super) struct QuotedArrayElements;

impl VisitorMut for QuotedArrayElements {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Array(array) = expr {
            for elem in &mut array.elem {
                if let Expr::Value(v) = elem
                    && let Value::SingleQuotedString(text) = &mut v.value
                    && text.len() >= 2
                    && text.starts_with('"')
                    && text.ends_with('"')
                {
                    *text = text[1..text.len() - 1].replace("\\\"", "\"");
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Catalogs that have no rows for Bulkhead (no defaults, sequences, inheritance,
/// triggers, policies, extended statistics or publications).
pub(super) const EMPTY_CATALOGS: &[&str] = &[
    "pg_attrdef",
    "pg_sequence",
    "pg_inherits",
    "pg_trigger",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
];

/// A scalar subquery that reads only [`EMPTY_CATALOGS`] (and aggregates nothing) is
/// NULL. Replacing it spares DataFusion correlated predicates it cannot plan, such as
/// SQLAlchemy's `(SELECT pg_get_expr(...) FROM pg_attrdef WHERE pg_attribute.atthasdef
/// AND ...)`.
pub(super) struct EmptyCatalogSubqueries;

impl VisitorMut for EmptyCatalogSubqueries {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Subquery(query) = expr else {
            return ControlFlow::Continue(());
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            return ControlFlow::Continue(());
        };
        let aggregates = select.projection.iter().any(|item| {
            matches!(item, SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } if is_aggregate(e))
        });
        let empty = |factor: &TableFactor| match factor {
            TableFactor::Table { name, .. } => {
                name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                    EMPTY_CATALOGS.contains(&i.value.to_ascii_lowercase().as_str())
                })
            }
            _ => false,
        };
        let all_empty = !select.from.is_empty()
            && select
                .from
                .iter()
                .all(|t| empty(&t.relation) && t.joins.iter().all(|j| empty(&j.relation)));
        if all_empty && !aggregates {
            *expr = Expr::value(Value::Null);
        }
        ControlFlow::Continue(())
    }
}

/// DataFusion plans a correlated scalar subquery only when it is aggregated; catalog
/// queries (SQLAlchemy's column reflection) select one value per outer row without
/// one. In queries on `pg_catalog`, a scalar subquery of one plain expression, without
/// ORDER BY, GROUP BY or aggregate, becomes `max(expr)` (a lone row's value; NULL
/// without one, as the subquery would be).
pub(super) struct AggregateScalarSubqueries;

impl VisitorMut for AggregateScalarSubqueries {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Subquery(query) = expr else {
            return ControlFlow::Continue(());
        };
        if query.order_by.is_some() || query.with.is_some() || query.fetch.is_some() {
            return ControlFlow::Continue(());
        }
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let no_group = matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
        if select.projection.len() != 1 || !no_group || select.having.is_some() {
            return ControlFlow::Continue(());
        }
        let item = match &mut select.projection[0] {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return ControlFlow::Continue(()),
        };
        if is_aggregate(item) {
            return ControlFlow::Continue(());
        }
        let Ok(wrapped) = Parser::new(&PostgreSqlDialect {})
            .try_with_sql("max(NULL)")
            .and_then(|mut p| p.parse_expr())
        else {
            return ControlFlow::Continue(());
        };
        let mut wrapped = wrapped;
        if let Expr::Function(f) = &mut wrapped
            && let FunctionArguments::List(list) = &mut f.args
            && let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = list.args.first_mut()
        {
            *arg = std::mem::replace(item, Expr::value(Value::Null));
            *item = wrapped;
            query.limit_clause = None;
        }
        ControlFlow::Continue(())
    }
}

pub(super) fn is_aggregate(expr: &Expr) -> bool {
    const AGGREGATES: &[&str] = &[
        "max",
        "min",
        "count",
        "sum",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "every",
        "json_agg",
        "jsonb_agg",
    ];
    matches!(expr, Expr::Function(f) if f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| AGGREGATES.contains(&i.value.to_ascii_lowercase().as_str())))
}

/// [`REPLACEMENTS`], tokenized without whitespace.
pub(super) fn replacements() -> Vec<(Vec<Token>, String)> {
    REPLACEMENTS
        .iter()
        .map(|(pattern, replacement)| {
            let pattern = tokens(pattern)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .collect();
            (pattern, (*replacement).to_owned())
        })
        .collect()
}

/// Client SQL fragments replaced (token by token, whitespace ignored) before parsing.
pub(super) const REPLACEMENTS: &[(&str, &str)] = &[
    // Grafana's PostgreSQL data source (`postgresMetaQuery.ts`, `buildSchemaConstraint`):
    // the schemas of `search_path`, from a scalar function in FROM indexed by a
    // `generate_series` alias, which DataFusion cannot plan. The search path of a
    // Bulkhead session is its database.
    (
        r#"quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"#,
        "quote_ident(table_schema) = current_schema()",
    ),
    // The ADBC PostgreSQL driver's `adbc_get_objects(depth="all")`: a table's
    // constraints, unnesting `pg_constraint.conkey` (text in the library's catalog).
    // Bulkhead tables have no constraints.
    (
        "WITH fk_unnest AS ( SELECT con.conname, 'FOREIGN KEY' AS contype, conrelid, \
         UNNEST(con.conkey) AS conkey __REST__",
        "SELECT NULL AS conname, NULL AS contype, NULL AS colnames, NULL AS fschema, \
         NULL AS ftable, NULL AS fcolnames WHERE false",
    ),
    // psql's `\d+`: a table's storage options and its TOAST table's, with the
    // `array(subquery)` constructor DataFusion lacks. Bulkhead tables have none.
    (
        "pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from \
         pg_catalog.unnest(tc.reloptions) x), ', ')",
        "''",
    ),
];

/// Tokens of `sql` (PostgreSQL dialect), whitespace included.
pub(super) fn tokens(sql: &str) -> Option<Vec<Token>> {
    Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()
}

/// `sql` with every occurrence of a pattern's tokens replaced by its replacement.
pub(super) fn substitute<'a>(
    sql: &'a str,
    replacements: &[(Vec<Token>, String)],
) -> std::borrow::Cow<'a, str> {
    let Some(all) = tokens(sql) else {
        return sql.into();
    };
    let code: Vec<usize> = (0..all.len())
        .filter(|&i| !matches!(all[i], Token::Whitespace(_)))
        .collect();
    let mut out = String::new();
    let mut next = 0; // next token of `all` to copy
    let mut k = 0; // position in `code`
    let mut replaced = false;
    'scan: while k < code.len() {
        for (pattern, replacement) in replacements {
            // A pattern ending in `__REST__` replaces everything from its start on.
            let rest = matches!(pattern.last(), Some(Token::Word(w)) if w.value == "__REST__");
            let pattern = if rest {
                &pattern[..pattern.len() - 1]
            } else {
                &pattern[..]
            };
            if code.len() - k >= pattern.len()
                && pattern
                    .iter()
                    .enumerate()
                    .all(|(j, t)| all[code[k + j]] == *t)
            {
                for t in &all[next..code[k]] {
                    out.push_str(&t.to_string());
                }
                out.push_str(replacement);
                if rest {
                    return out.into();
                }
                next = code[k + pattern.len() - 1] + 1;
                k += pattern.len();
                replaced = true;
                continue 'scan;
            }
        }
        k += 1;
    }
    if !replaced {
        return sql.into();
    }
    for t in &all[next..] {
        out.push_str(&t.to_string());
    }
    out.into()
}

/// `information_schema.columns` as PostgreSQL has it: `data_type` holds PostgreSQL
/// type names (`double precision`, not `Float64`). The reference is replaced by a
/// subquery over DataFusion's table (named with its catalog, so not replaced again).
pub(super) struct PgColumns<'a>(&'a TableFactor);

pub(super) const PG_COLUMNS_SQL: &str = "SELECT * FROM (SELECT table_catalog, table_schema, table_name, \
    column_name, ordinal_position, column_default, is_nullable, \
    bulkhead_pg_type(data_type) AS data_type, bulkhead_pg_type(data_type) AS udt_name, \
    character_maximum_length, character_octet_length, numeric_precision, \
    numeric_precision_radix, numeric_scale, datetime_precision, interval_type \
    FROM bulkhead.information_schema.columns) AS columns";

impl VisitorMut for PgColumns<'_> {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
                .collect();
            if parts == ["information_schema", "columns"] {
                let alias = alias.take();
                *factor = self.0.clone();
                if let (TableFactor::Derived { alias: a, .. }, Some(alias)) = (&mut *factor, alias)
                {
                    *a = Some(alias);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// The derived table of [`PG_COLUMNS_SQL`].
pub(super) fn pg_columns_factor() -> TableFactor {
    let statement = Parser::parse_sql(&PostgreSqlDialect {}, PG_COLUMNS_SQL)
        .ok()
        .and_then(|mut s| s.pop());
    if let Some(Statement::Query(query)) = statement
        && let SetExpr::Select(select) = *query.body
        && let Some(from) = select.from.into_iter().next()
    {
        return from.relation;
    }
    unreachable!("PG_COLUMNS_SQL is a constant SELECT ... FROM (subquery)")
}

/// `pg_type`'s `regproc` columns hold function names (`-` for none), as PostgreSQL
/// displays them; clients compare them with the oid `0` (the ADBC driver's
/// `typreceive != 0`). Such a `0` becomes `'-'`.
pub(super) struct RegprocZero;

pub(super) const REGPROC_COLUMNS: &[&str] = &[
    "typinput",
    "typoutput",
    "typreceive",
    "typsend",
    "typmodin",
    "typmodout",
    "typanalyze",
    "typsubscript",
];

impl VisitorMut for RegprocZero {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp { left, op, right } = expr
            && matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq)
        {
            let column = match left.as_ref() {
                Expr::Identifier(i) => Some(&i.value),
                Expr::CompoundIdentifier(parts) => parts.last().map(|i| &i.value),
                _ => None,
            };
            let zero = matches!(right.as_ref(), Expr::Value(v) if v.value == Value::Number("0".into(), false));
            if zero
                && column
                    .is_some_and(|c| REGPROC_COLUMNS.contains(&c.to_ascii_lowercase().as_str()))
            {
                **right = Expr::value(Value::SingleQuotedString("-".into()));
            }
        }
        ControlFlow::Continue(())
    }
}
