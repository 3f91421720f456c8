//! Parquet records: each row of a parquet file (the Hugging Face Hub's dataset format) as the
//! JSON object of its columns, lists as arrays and structs as objects, so that a format's
//! columns read as its JSONL fields do.
//!
//! Rows come from the parquet crate's record API, which reads each column a page at a time and
//! decodes a batch of values at a time (1024 by default), so memory is bounded by a few pages a
//! column, not by the size of a row group or of the file. Its record reader panics on schemas
//! it cannot assemble (a list group without its repeated child, a type it has no conversion for),
//! so the schema is checked first, and such a file is an error naming the column. It also
//! asserts on the levels it decodes from the pages, so a corrupt page can still panic: that
//! panic is caught and becomes the error of the row being read.

use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use parquet::basic::{ConvertedType, Repetition, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::schema::types::Type;

use super::raw::{record_error, Raw};
use super::FileKind;
use crate::DataError;

/// The first (and last) bytes of a parquet file.
pub(super) const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// The rows of one parquet file.
pub(super) struct Rows {
    path: PathBuf,
    rows: RowIter<'static>,
    /// Rows and uncompressed bytes of each row group not yet begun, in order.
    groups: std::vec::IntoIter<(u64, u64)>,
    /// The last row read, from 1.
    row: u64,
    /// The last row of the row groups begun.
    groups_end: u64,
}

impl Rows {
    /// Opens `file` (at `path`): reads its footer and checks its schema.
    pub(super) fn open(path: &Path, file: File) -> Result<Self, DataError> {
        let malformed = |location: &str, problem: String| DataError::Malformed {
            path: path.to_owned(),
            location: location.to_owned(),
            problem,
        };
        let reader = guarded(|| SerializedFileReader::new(file))
            .and_then(|read| read.map_err(|e| e.to_string()))
            .map_err(|problem| {
                malformed(
                    "parquet footer",
                    format!("cannot read (a truncated or corrupt file?): {problem}"),
                )
            })?;
        let metadata = reader.metadata();
        let columns = metadata.file_metadata().schema().get_fields();
        if columns.is_empty() {
            return Err(malformed("schema", "no columns".into()));
        }
        for column in columns {
            check_readable(column, column.name())
                .map_err(|(at, problem)| malformed(&format!("column {at:?}"), problem))?;
        }
        let groups: Vec<(u64, u64)> = metadata
            .row_groups()
            .iter()
            .map(|group| {
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                (count(group.num_rows()), count(group.total_byte_size()))
            })
            .collect();
        Ok(Self {
            path: path.to_owned(),
            rows: RowIter::from_file_into(Box::new(reader)),
            groups: groups.into_iter(),
            row: 0,
            groups_end: 0,
        })
    }

    /// The next row, or `None` at the end of the file; its bytes are those of its row group if
    /// it is the group's first. A page that cannot be read or decoded is an error.
    pub(super) fn next(&mut self) -> Result<Option<Raw>, DataError> {
        let line = self.row + 1;
        let row = guarded(|| self.rows.next())
            .and_then(|row| row.transpose().map_err(|e| e.to_string()))
            .map_err(|problem| {
                record_error(
                    &self.path,
                    FileKind::Parquet,
                    line,
                    format!("cannot read (a truncated or corrupt file?): {problem}"),
                )
            })?;
        let Some(row) = row else {
            return Ok(None);
        };
        self.row = line;
        let mut bytes = 0;
        while line > self.groups_end {
            let Some((rows, group_bytes)) = self.groups.next() else {
                break;
            };
            self.groups_end += rows;
            bytes += group_bytes;
        }
        Ok(Some(Raw {
            line,
            bytes,
            value: Some(Ok(row.to_json_value())),
        }))
    }
}

/// Runs `read`, a call into the parquet crate, with a panic turned into its message (see the
/// module's doc: found by corrupting single bytes of a small file).
fn guarded<T>(read: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(read)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied());
        format!(
            "the parquet reader failed: {}",
            message.unwrap_or("no message")
        )
    })
}

/// Checks that the record reader can assemble the field `field` (at path `at`) and convert its
/// values: the shapes it asserts on and the types it has a conversion for. The error names the
/// column's path and what is wrong.
fn check_readable(field: &Type, at: &str) -> Result<(), (String, String)> {
    let fail = |problem: &str| Err((at.to_owned(), problem.to_owned()));
    if field.is_primitive() {
        let converted = field.get_basic_info().converted_type();
        if !converts(field.get_physical_type(), converted) {
            return fail(&format!(
                "values of type {} ({converted}) cannot be read",
                field.get_physical_type()
            ));
        }
        return Ok(());
    }
    let children = field.get_fields();
    let Some(first) = children.first() else {
        return fail("a group without fields");
    };
    let repeated = first.get_basic_info().repetition() == Repetition::REPEATED;
    match field.get_basic_info().converted_type() {
        ConvertedType::LIST if children.len() != 1 || !repeated => {
            return fail("a list whose group does not hold one repeated field");
        }
        ConvertedType::MAP | ConvertedType::MAP_KEY_VALUE
            if children.len() != 1
                || !repeated
                || first.is_primitive()
                || !(1..=2).contains(&first.get_fields().len()) =>
        {
            return fail("a map whose group does not hold one repeated key-value group");
        }
        _ => {}
    }
    children
        .iter()
        .try_for_each(|child| check_readable(child, &format!("{at}.{}", child.name())))
}

/// Whether the record API converts values of this physical and converted type (it panics on
/// the others).
fn converts(physical: PhysicalType, converted: ConvertedType) -> bool {
    use ConvertedType as C;
    match physical {
        PhysicalType::BOOLEAN
        | PhysicalType::INT96
        | PhysicalType::FLOAT
        | PhysicalType::DOUBLE => true,
        PhysicalType::INT32 => matches!(
            converted,
            C::NONE
                | C::INT_8
                | C::INT_16
                | C::INT_32
                | C::UINT_8
                | C::UINT_16
                | C::UINT_32
                | C::DATE
                | C::TIME_MILLIS
                | C::DECIMAL
        ),
        PhysicalType::INT64 => matches!(
            converted,
            C::NONE
                | C::INT_64
                | C::UINT_64
                | C::TIME_MICROS
                | C::TIMESTAMP_MILLIS
                | C::TIMESTAMP_MICROS
                | C::DECIMAL
        ),
        PhysicalType::BYTE_ARRAY => matches!(
            converted,
            C::NONE | C::UTF8 | C::ENUM | C::JSON | C::BSON | C::DECIMAL
        ),
        PhysicalType::FIXED_LEN_BYTE_ARRAY => matches!(converted, C::NONE | C::DECIMAL),
    }
}

#[cfg(test)]
mod tests;
