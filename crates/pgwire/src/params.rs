//! Bound parameters of the extended protocol, turned into SQL literals and substituted
//! for `$n` (the query layer plans SQL text, so a parameter becomes a typed literal).

use pgwire::api::Type;
use pgwire::api::portal::Portal;

use crate::error::PgError;
use crate::sql;

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The portal's statement with its parameters substituted.
pub(crate) fn bind(portal: &Portal<String>) -> Result<String, PgError> {
    let stmt = &portal.statement;
    let values = portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let ty = stmt
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or(Type::UNKNOWN);
            let binary = portal.parameter_format.is_binary(i);
            literal(i + 1, &ty, binary, value.as_deref())
        })
        .collect::<Result<Vec<_>, _>>()?;
    sql::substitute(&stmt.statement, &values)
}

/// `sql` with every parameter NULL: enough to plan it and learn its result columns.
/// `count` comes from [`sql::parameter_count`], so it is at most
/// [`sql::MAX_PARAMETERS`].
pub(crate) fn bind_nulls(stmt: &str, count: usize) -> Result<String, PgError> {
    let nulls = vec!["NULL".to_owned(); count.min(sql::MAX_PARAMETERS)];
    sql::substitute(stmt, &nulls)
}

/// One parameter as a SQL literal.
fn literal(n: usize, ty: &Type, binary: bool, value: Option<&[u8]>) -> Result<String, PgError> {
    let Some(value) = value else {
        return Ok("NULL".to_owned());
    };
    let bad = |what: &str| PgError::Parameter(format!("parameter ${n} ({}): {what}", ty.name()));
    if binary {
        return binary_literal(ty, value).ok_or_else(|| {
            bad("this binary parameter type is not supported; send it in text format")
        });
    }
    let text = std::str::from_utf8(value).map_err(|_| bad("not valid UTF-8"))?;
    Ok(match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            text.trim()
                .parse::<i64>()
                .map_err(|_| bad("not an integer"))?;
            text.trim().to_owned()
        }
        Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => {
            let v = text
                .trim()
                .parse::<f64>()
                .map_err(|_| bad("not a number"))?;
            if v.is_finite() {
                text.trim().to_owned()
            } else {
                format!("CAST({} AS DOUBLE)", sql::quote_literal(text.trim()))
            }
        }
        Type::BOOL => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "on" | "yes" | "y" | "1" => "TRUE".to_owned(),
            "f" | "false" | "off" | "no" | "n" | "0" => "FALSE".to_owned(),
            _ => return Err(bad("not a boolean")),
        },
        Type::TIMESTAMPTZ | Type::TIMESTAMP => {
            format!("CAST({} AS TIMESTAMP)", sql::quote_literal(text))
        }
        _ => sql::quote_literal(text),
    })
}

fn binary_literal(ty: &Type, v: &[u8]) -> Option<String> {
    Some(match *ty {
        Type::BOOL => (if *v.first()? != 0 { "TRUE" } else { "FALSE" }).to_owned(),
        Type::INT2 => i16::from_be_bytes(v.try_into().ok()?).to_string(),
        Type::INT4 => i32::from_be_bytes(v.try_into().ok()?).to_string(),
        Type::INT8 => i64::from_be_bytes(v.try_into().ok()?).to_string(),
        Type::FLOAT4 => float(f64::from(f32::from_be_bytes(v.try_into().ok()?))),
        Type::FLOAT8 => float(f64::from_be_bytes(v.try_into().ok()?)),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => {
            let micros = i64::from_be_bytes(v.try_into().ok()?).checked_add(PG_EPOCH_MICROS)?;
            format!("to_timestamp_micros({micros})")
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            sql::quote_literal(std::str::from_utf8(v).ok()?)
        }
        _ => return None,
    })
}

fn float(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        format!("CAST('{v}' AS DOUBLE)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parameters_become_typed_literals() {
        assert_eq!(literal(1, &Type::INT8, false, Some(b"42")).unwrap(), "42");
        assert!(literal(1, &Type::INT8, false, Some(b"1; drop")).is_err());
        assert_eq!(
            literal(1, &Type::UNKNOWN, false, Some(b"it's")).unwrap(),
            "'it''s'"
        );
        assert_eq!(literal(1, &Type::BOOL, false, Some(b"t")).unwrap(), "TRUE");
        assert_eq!(literal(1, &Type::TEXT, false, None).unwrap(), "NULL");
    }

    #[test]
    fn binary_parameters_are_decoded() {
        assert_eq!(
            literal(1, &Type::INT8, true, Some(&7i64.to_be_bytes())).unwrap(),
            "7"
        );
        assert_eq!(
            literal(1, &Type::FLOAT8, true, Some(&1.5f64.to_be_bytes())).unwrap(),
            "1.5"
        );
        assert!(literal(1, &Type::JSON, true, Some(b"{}")).is_err());
    }
}
