//! The PostgreSQL functions Bulkhead adds or answers itself (`version()`,
//! `current_setting`, `to_regtype`, `pg_typeof`, `json_build_object`, ...).

use super::*;

/// `version()`: PostgreSQL's form first (drivers such as SQLAlchemy parse the number
/// after `PostgreSQL`), then what actually answers.
pub fn version() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (Bulkhead {}, Apache DataFusion {}) on {}",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH,
    )
}

/// The value of a PostgreSQL setting a client may ask for with `SHOW` or
/// `current_setting()`, in a session whose database is `db`.
pub fn setting(name: &str, db: &str) -> Option<String> {
    Some(
        match name.to_ascii_lowercase().as_str() {
            "transaction isolation level" | "transaction_isolation" => "read committed",
            "transaction_read_only" | "default_transaction_read_only" => "on",
            "server_version" => PG_VERSION,
            "server_version_num" => "160006",
            "server_encoding" | "client_encoding" => "UTF8",
            "standard_conforming_strings" | "integer_datetimes" => "on",
            "timezone" => "UTC",
            "datestyle" => "ISO, MDY",
            "intervalstyle" => "postgres",
            "max_identifier_length" => "63",
            "is_superuser" => "off",
            "application_name" => "",
            "search_path" => db,
            _ => return None,
        }
        .to_owned(),
    )
}

/// A function of no arguments that always answers `value`.
pub(super) fn constant(name: &str, value: &str) -> ScalarUDF {
    let value = value.to_owned();
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                value.clone(),
            ))))
        }),
    )
}

/// `current_schemas(include_implicit)`: the session's database, with `pg_catalog`
/// first when implicit schemas are asked for (as PostgreSQL's search path has it).
pub(super) fn current_schemas(db: &str) -> ScalarUDF {
    let db = db.to_owned();
    create_udf(
        "current_schemas",
        vec![DataType::Boolean],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let implicit = arrow::array::cast::as_boolean_array(&args[0]);
            let mut list = ListBuilder::new(StringBuilder::new());
            for i in 0..implicit.len() {
                if implicit.is_valid(i) && implicit.value(i) {
                    list.values().append_value(PG_CATALOG);
                }
                list.values().append_value(&db);
                list.append(true);
            }
            Ok(ColumnarValue::Array(Arc::new(list.finish()) as ArrayRef))
        }),
    )
}

/// `current_setting(name)`: the settings of [`setting`]; an unknown one is an error,
/// as in PostgreSQL.
pub(super) fn current_setting(db: &str) -> ScalarUDF {
    let db = db.to_owned();
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let names = arrow::array::cast::as_string_array(&args[0]);
            let values = names
                .iter()
                .map(|name| match name {
                    None => Ok(None),
                    Some(n) => setting(n, &db).map(Some).ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "unrecognized configuration parameter \"{n}\""
                        ))
                    }),
                })
                .collect::<Result<StringArray>>()?;
            Ok(ColumnarValue::Array(Arc::new(values)))
        }),
    )
}

/// Functions about objects Bulkhead does not have (comments, views, indexes, sequences,
/// defaults): NULL, as PostgreSQL answers for an object without one.
pub(super) const NULL_TEXT_FUNCTIONS: &[&str] = &[
    "col_description",
    "obj_description",
    "shobj_description",
    "pg_get_indexdef",
    "pg_get_viewdef",
    "pg_get_triggerdef",
    "pg_get_ruledef",
    "pg_get_serial_sequence",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_function_arguments",
];

/// A function that answers one value, whatever its arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Constant {
    name: &'static str,
    value: ScalarValue,
    signature: Signature,
}

impl Constant {
    pub(super) fn new(name: &'static str, value: ScalarValue) -> Self {
        Self {
            name,
            value,
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `json_build_object(k1, v1, ...)`: a JSON object as text (SQLAlchemy's column
/// reflection builds identity and collation details with it).
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "json_build_object needs an even number of arguments".into(),
            ));
        }
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = arrays
            .iter()
            .map(|a| arrow::compute::cast(a, &DataType::Utf8))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let mut json = String::from("{");
            for pair in 0..arrays.len() / 2 {
                let (k, v) = (pair * 2, pair * 2 + 1);
                if pair > 0 {
                    json.push_str(", ");
                }
                let key = arrow::array::cast::as_string_array(&texts[k]);
                json_string(
                    &mut json,
                    if key.is_null(row) { "" } else { key.value(row) },
                );
                json.push_str(" : ");
                let value = arrow::array::cast::as_string_array(&texts[v]);
                if value.is_null(row) {
                    json.push_str("null");
                } else if arrays[v].data_type().is_numeric()
                    || *arrays[v].data_type() == DataType::Boolean
                {
                    json.push_str(value.value(row));
                } else {
                    json_string(&mut json, value.value(row));
                }
            }
            json.push('}');
            out.append_value(json);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

pub(super) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `bulkhead_pg_type(arrow_type_name)`: the PostgreSQL name of the type that
/// DataFusion's `information_schema` names (`Float64` -> `double precision`).
pub(super) fn pg_type_of_arrow_name() -> ScalarUDF {
    create_udf(
        "bulkhead_pg_type",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let names = arrow::array::cast::as_string_array(&args[0]);
            let out: StringArray = names
                .iter()
                .map(|n| {
                    n.map(|n| match n.parse::<DataType>() {
                        Ok(ty) => pg_type_name(&ty),
                        Err(_) => n.to_owned(),
                    })
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `pg_typeof(x)`: the PostgreSQL name of `x`'s type, as the PG protocol sends it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct PgTypeOf {
    signature: Signature,
}

impl PgTypeOf {
    pub(super) fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgTypeOf {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ty = args.args[0].data_type();
        let name = pg_type_name(&ty);
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// PostgreSQL's name (`format_type`) for the type an Arrow type is sent as.
pub fn pg_type_name(ty: &DataType) -> String {
    match ty {
        DataType::Dictionary(_, value) => pg_type_name(value),
        DataType::Null => "unknown".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Interval(_) | DataType::Duration(_) => "interval".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            format!("{}[]", pg_type_name(f.data_type()))
        }
        // Types without a PostgreSQL counterpart are sent as text.
        _ => "text".into(),
    }
}

/// Type name -> oid, from the static `pg_type`.
pub(super) fn type_oids(tables: &PgCatalogStaticTables) -> Arc<HashMap<String, i32>> {
    let mut map = HashMap::new();
    for batch in tables.pg_type.data() {
        let (Some(oid), Some(name)) =
            (batch.column_by_name("oid"), batch.column_by_name("typname"))
        else {
            continue;
        };
        let (Some(oid), Some(name)) = (
            oid.as_any().downcast_ref::<Int32Array>(),
            name.as_any().downcast_ref::<StringArray>(),
        ) else {
            continue;
        };
        for i in 0..batch.num_rows() {
            if oid.is_valid(i) && name.is_valid(i) {
                map.insert(name.value(i).to_owned(), oid.value(i));
            }
        }
    }
    Arc::new(map)
}

/// `to_regtype(name)`: the oid of a type by name (`int4`, `pg_catalog.text`), NULL
/// for an unknown one (psycopg asks for `hstore` this way).
pub(super) fn to_regtype(oids: Arc<HashMap<String, i32>>) -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let args = ColumnarValue::values_to_arrays(args)?;
            let names = arrow::array::cast::as_string_array(&args[0]);
            let out: Int32Array = names
                .iter()
                .map(|n| {
                    let n = n?.trim().trim_matches('"').to_ascii_lowercase();
                    let n = n.strip_prefix("pg_catalog.").unwrap_or(&n);
                    oids.get(n).copied()
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}
