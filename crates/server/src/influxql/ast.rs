//! The InfluxQL syntax tree produced by the parser.

/// One statement of a `q` parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Statement {
    Select(Box<Select>),
    CreateDatabase(String),
    /// `DROP DATABASE name`: the engine's drop (idempotent, as in InfluxDB).
    DropDatabase(String),
    /// `DROP MEASUREMENT name`: the engine's drop of the measurement's table.
    DropMeasurement(String),
    ShowDatabases,
    ShowRetentionPolicies(Option<String>),
    ShowMeasurements {
        on: Option<String>,
        /// `WITH MEASUREMENT =~ /re/` (regex) or `= name`.
        with: Option<NameMatch>,
        cond: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    ShowTagKeys {
        on: Option<String>,
        from: Vec<Source>,
        cond: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    ShowTagValues {
        on: Option<String>,
        from: Vec<Source>,
        key: NameMatch,
        cond: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    ShowFieldKeys {
        on: Option<String>,
        from: Vec<Source>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    ShowSeries {
        on: Option<String>,
        from: Vec<Source>,
        cond: Option<Expr>,
        limit: Option<u64>,
        offset: Option<u64>,
    },
    /// `SHOW MEASUREMENT|SERIES|TAG KEY|TAG VALUES|FIELD KEY [EXACT] CARDINALITY ...`:
    /// the rows of `inner` (the matching `SHOW`) counted.
    Cardinality {
        exact: bool,
        inner: Box<Statement>,
    },
    /// `DELETE [FROM sources] [WHERE tags and time]`: rows of the matching series in
    /// the time range, from each measurement (every one of the database without FROM).
    Delete {
        from: Vec<Source>,
        cond: Option<Expr>,
    },
    /// `DROP SERIES [FROM sources] [WHERE tags]`: every row of the matching series.
    DropSeries {
        from: Vec<Source>,
        cond: Option<Expr>,
    },
    /// A statement InfluxQL has and Bulkhead does not (yet): the name says which.
    Unsupported(String),
}

/// A name matched exactly, against a list, or by a regex.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NameMatch {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    Regex(String),
    NotRegex(String),
}

impl NameMatch {
    /// SQL condition on the string expression `col` (already SQL).
    pub(crate) fn to_sql(&self, col: &str) -> String {
        use super::sql::string_literal as lit;
        match self {
            NameMatch::Eq(v) => format!("{col} = {}", lit(v)),
            NameMatch::NotEq(v) => format!("{col} <> {}", lit(v)),
            NameMatch::In(vs) => {
                let list: Vec<String> = vs.iter().map(|v| lit(v)).collect();
                format!("{col} IN ({})", list.join(", "))
            }
            NameMatch::Regex(r) => format!("{col} ~ {}", lit(r)),
            NameMatch::NotRegex(r) => format!("{col} !~ {}", lit(r)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    Measurement { db: Option<String>, name: String },
    Regex { db: Option<String>, regex: String },
    Subquery(Box<Select>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub(crate) expr: Expr,
    pub(crate) alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dimension {
    Time { interval: i64, offset: i64 },
    Tag(String),
    Wildcard,
    Regex(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fill {
    Null,
    None,
    Value(f64),
    Previous,
    Linear,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Select {
    pub(crate) fields: Vec<Field>,
    pub(crate) from: Vec<Source>,
    pub(crate) cond: Option<Expr>,
    pub(crate) group_by: Vec<Dimension>,
    pub(crate) fill: Fill,
    pub(crate) order_desc: bool,
    pub(crate) limit: Option<u64>,
    pub(crate) offset: Option<u64>,
    pub(crate) slimit: Option<u64>,
    pub(crate) soffset: Option<u64>,
    pub(crate) tz: Option<String>,
    pub(crate) into: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    EqRegex,
    NotEqRegex,
    And,
    Or,
}

impl BinOp {
    /// Binding strength, InfluxQL's: OR < AND < comparisons < + - | ^ < * / % &.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Eq
            | BinOp::NotEq
            | BinOp::Lt
            | BinOp::LtEq
            | BinOp::Gt
            | BinOp::GtEq
            | BinOp::EqRegex
            | BinOp::NotEqRegex => 3,
            BinOp::Add | BinOp::Sub | BinOp::BitOr | BinOp::BitXor => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::BitAnd => 5,
        }
    }

    pub(crate) fn from_op(op: &str) -> Option<Self> {
        Some(match op {
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "&" => BinOp::BitAnd,
            "|" => BinOp::BitOr,
            "^" => BinOp::BitXor,
            "=" => BinOp::Eq,
            "!=" | "<>" => BinOp::NotEq,
            "<" => BinOp::Lt,
            "<=" => BinOp::LtEq,
            ">" => BinOp::Gt,
            ">=" => BinOp::GtEq,
            "=~" => BinOp::EqRegex,
            "!~" => BinOp::NotEqRegex,
            _ => return None,
        })
    }

    pub(crate) fn is_comparison(self) -> bool {
        self.precedence() == 3
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A column reference, with its `::type` hint if any (`::tag`, `::field`, `::float`...).
    Var {
        name: String,
        cast: Option<String>,
    },
    Integer(i64),
    Number(f64),
    Str(String),
    Bool(bool),
    Regex(String),
    /// A duration literal, in nanoseconds.
    Duration(i64),
    /// `*` as a field or function argument.
    Wildcard,
    Call {
        name: String,
        args: Vec<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Paren(Box<Expr>),
}

impl Expr {
    pub(crate) fn var(name: &str) -> Expr {
        Expr::Var {
            name: name.to_string(),
            cast: None,
        }
    }

    pub(crate) fn binary(op: BinOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        }
    }

    /// The expression without enclosing parentheses.
    pub(crate) fn unparen(&self) -> &Expr {
        match self {
            Expr::Paren(inner) => inner.unparen(),
            other => other,
        }
    }
}
