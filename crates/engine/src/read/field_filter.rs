//! Field predicates a scan applies itself: an `AND` of comparisons of a field with a
//! constant (`usage_user > 90`), evaluated with Arrow's comparison kernels, the same
//! ones a SQL engine's filter uses, so a row passes here exactly when it would pass
//! there (floats compare by IEEE total order; a NULL never passes).
//!
//! SSTs evaluate it inside the Parquet decoder (late materialization: the other
//! columns are decoded only for the rows that pass); memtables and merged sources
//! after the rows are built, since only the merged row (newer wins, field by field) is
//! what a query sees.

use std::collections::BTreeSet;
use std::fmt;

use arrow::array::{Array, ArrayRef, BooleanArray, Scalar, new_null_array};
use arrow::compute::kernels::cmp;
use arrow::compute::{and, cast, prep_null_mask_filter};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::model::FieldValue;
use crate::schema::arrow_type;

/// How a field is compared with its constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

impl fmt::Display for FieldOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldOp::Eq => "=",
            FieldOp::NotEq => "!=",
            FieldOp::Lt => "<",
            FieldOp::LtEq => "<=",
            FieldOp::Gt => ">",
            FieldOp::GtEq => ">=",
        })
    }
}

/// `field <op> value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldComparison {
    pub field: String,
    pub op: FieldOp,
    pub value: FieldValue,
}

impl fmt::Display for FieldComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.field, self.op)?;
        match &self.value {
            FieldValue::F64(v) => write!(f, "{v:?}"),
            FieldValue::I64(v) => write!(f, "{v}"),
            FieldValue::U64(v) => write!(f, "{v}"),
            FieldValue::Bool(v) => write!(f, "{v}"),
            FieldValue::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// An `AND` of [`FieldComparison`]s: a row passes when every one is TRUE (not FALSE,
/// not NULL). Empty passes every row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldFilter {
    pub conjuncts: Vec<FieldComparison>,
}

impl fmt::Display for FieldFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.conjuncts.iter().enumerate() {
            if i > 0 {
                f.write_str(" AND ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl FieldFilter {
    pub fn is_empty(&self) -> bool {
        self.conjuncts.is_empty()
    }

    /// The fields it reads.
    pub fn columns(&self) -> BTreeSet<&str> {
        self.conjuncts.iter().map(|c| c.field.as_str()).collect()
    }

    /// The Arrow type each compared column has to have to be compared as it is
    /// (the type of its constant); a column of another type is cast to it first.
    pub(crate) fn expected_type(&self, field: &str) -> Option<DataType> {
        self.conjuncts
            .iter()
            .find(|c| c.field == field)
            .map(|c| arrow_type(c.value.field_type()))
    }

    /// Which rows of `batch` pass. A compared column that `batch` lacks is NULL in
    /// every row (a field the source never had), so no row passes.
    pub fn mask(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let rows = batch.num_rows();
        let mut out: Option<BooleanArray> = None;
        for c in &self.conjuncts {
            let ty = arrow_type(c.value.field_type());
            let column: ArrayRef = match batch.column_by_name(&c.field) {
                Some(col) if col.data_type() == &ty => std::sync::Arc::clone(col),
                Some(col) => cast(col, &ty)?,
                None => new_null_array(&ty, rows),
            };
            let m = compare(&column, c.op, &c.value)?;
            let m = if m.null_count() > 0 {
                prep_null_mask_filter(&m)
            } else {
                m
            };
            out = Some(match out {
                None => m,
                Some(prev) => and(&prev, &m)?,
            });
        }
        Ok(out.unwrap_or_else(|| BooleanArray::from(vec![true; rows])))
    }
}

/// `column <op> value` with Arrow's comparison kernels (`column` has `value`'s type).
fn compare(column: &ArrayRef, op: FieldOp, value: &FieldValue) -> Result<BooleanArray, ArrowError> {
    use arrow::array::{BooleanArray as B, Float64Array, Int64Array, StringArray, UInt64Array};
    let scalar: ArrayRef = match value {
        FieldValue::F64(v) => std::sync::Arc::new(Float64Array::from(vec![*v])),
        FieldValue::I64(v) => std::sync::Arc::new(Int64Array::from(vec![*v])),
        FieldValue::U64(v) => std::sync::Arc::new(UInt64Array::from(vec![*v])),
        FieldValue::Bool(v) => std::sync::Arc::new(B::from(vec![*v])),
        FieldValue::Str(v) => std::sync::Arc::new(StringArray::from(vec![v.as_str()])),
    };
    let scalar = Scalar::new(scalar);
    match op {
        FieldOp::Eq => cmp::eq(column, &scalar),
        FieldOp::NotEq => cmp::neq(column, &scalar),
        FieldOp::Lt => cmp::lt(column, &scalar),
        FieldOp::LtEq => cmp::lt_eq(column, &scalar),
        FieldOp::Gt => cmp::gt(column, &scalar),
        FieldOp::GtEq => cmp::gt_eq(column, &scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn cmp(field: &str, op: FieldOp, value: FieldValue) -> FieldComparison {
        FieldComparison {
            field: field.into(),
            op,
            value,
        }
    }

    #[test]
    fn and_of_comparisons_with_nulls_and_nan() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Float64, true),
            Field::new("i", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![
                    Some(91.0),
                    None,
                    Some(f64::NAN),
                    Some(50.0),
                    Some(95.0),
                ])),
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(1),
                    Some(1),
                    Some(1),
                    None,
                ])),
                Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"])),
            ],
        )
        .unwrap();
        let f = FieldFilter {
            conjuncts: vec![cmp("f", FieldOp::Gt, FieldValue::F64(90.0))],
        };
        // NaN is greater than every number in IEEE total order, as in DataFusion.
        let m = f.mask(&batch).unwrap();
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [true, false, true, false, true].map(Some)
        );
        let f = FieldFilter {
            conjuncts: vec![
                cmp("f", FieldOp::Gt, FieldValue::F64(90.0)),
                cmp("i", FieldOp::Eq, FieldValue::I64(1)),
                cmp("s", FieldOp::NotEq, FieldValue::Str("c".into())),
            ],
        };
        assert_eq!(f.mask(&batch).unwrap().true_count(), 1);
        // A field the batch does not have is NULL: nothing passes, not even `!=`.
        let f = FieldFilter {
            conjuncts: vec![cmp("absent", FieldOp::NotEq, FieldValue::F64(0.0))],
        };
        assert_eq!(f.mask(&batch).unwrap().true_count(), 0);
        assert_eq!(f.to_string(), "absent != 0.0");
    }
}
