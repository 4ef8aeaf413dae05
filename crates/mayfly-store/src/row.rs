//! Query parameters and result rows. Rows are read by column name into a
//! `Result`: a column missing from the query, a NULL where a value is
//! required or a number where text is expected is an error that names the
//! column, never a silent zero or empty string.

use std::borrow::Cow;
use std::sync::Arc;

use crate::StoreError;

/// A statement's parameter. Text is borrowed where the caller has it
/// (the writer binds every credential's and event's fields without a copy).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<String> for Value<'_> {
    fn from(v: String) -> Self {
        Value::Text(Some(Cow::Owned(v)))
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Some(Cow::Borrowed(v)))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl From<Option<String>> for Value<'_> {
    fn from(v: Option<String>) -> Self {
        Value::Text(v.map(Cow::Owned))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::Text(v.map(Cow::Borrowed))
    }
}

/// A result cell.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
}

/// One result row: its cells and the names of the query's columns.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    columns: Arc<[String]>,
    cells: Vec<Cell>,
}

fn column_error(column: &str, problem: &'static str) -> StoreError {
    StoreError::Column {
        column: column.to_owned(),
        problem,
    }
}

impl Row {
    /// An empty row for a query with these columns; drivers fill it with
    /// [`Row::set_int`], [`Row::set_text`] and [`Row::set_null`].
    pub(crate) fn new(columns: Arc<[String]>) -> Row {
        let cells = vec![Cell::Text(None); columns.len()];
        Row { columns, cells }
    }

    fn position(&self, column: &str) -> Result<usize, StoreError> {
        self.columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| column_error(column, "is not in the query"))
    }

    fn cell(&self, column: &str) -> Result<&Cell, StoreError> {
        let i = self.position(column)?;
        self.cells
            .get(i)
            .ok_or_else(|| column_error(column, "is not in the row"))
    }

    /// A text column that must not be NULL; the text is moved out.
    pub(crate) fn text(&mut self, column: &str) -> Result<String, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| column_error(column, "is NULL"))
    }

    /// A text column that may be NULL; the text is moved out.
    pub(crate) fn opt_text(&mut self, column: &str) -> Result<Option<String>, StoreError> {
        let i = self.position(column)?;
        match self.cells.get_mut(i) {
            Some(Cell::Text(v)) => Ok(v.take()),
            Some(Cell::Int(None)) => Ok(None),
            Some(Cell::Int(Some(_))) => Err(column_error(column, "holds a number, not text")),
            None => Err(column_error(column, "is not in the row")),
        }
    }

    /// An integer column that must not be NULL.
    pub(crate) fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.opt_int(column)?
            .ok_or_else(|| column_error(column, "is NULL"))
    }

    /// An integer column that may be NULL.
    pub(crate) fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        match self.cell(column)? {
            Cell::Int(v) => Ok(*v),
            Cell::Text(None) => Ok(None),
            Cell::Text(Some(_)) => Err(column_error(column, "holds text, not a number")),
        }
    }

    /// A flag stored as an integer (0 or 1).
    pub(crate) fn flag(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.int(column)? != 0)
    }

    pub(crate) fn set_int(&mut self, i: usize, v: Option<i64>) {
        if let Some(cell) = self.cells.get_mut(i) {
            *cell = Cell::Int(v);
        }
    }

    pub(crate) fn set_null(&mut self, i: usize) {
        if let Some(cell) = self.cells.get_mut(i) {
            *cell = Cell::Text(None);
        }
    }

    /// Sets a text cell, reusing the cell's string when it has one: a query
    /// that reads a million rows through one row allocates only for what
    /// its caller keeps.
    pub(crate) fn set_text(&mut self, i: usize, bytes: &[u8]) {
        let Some(cell) = self.cells.get_mut(i) else {
            return;
        };
        // The strict check is the fast one; stores hold UTF-8.
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        match cell {
            Cell::Text(Some(buffer)) => {
                buffer.clear();
                buffer.push_str(&text);
            }
            _ => *cell = Cell::Text(Some(text.into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        let columns: Arc<[String]> = ["id", "n", "note"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut row = Row::new(columns);
        row.set_text(0, b"a1");
        row.set_int(1, Some(7));
        row.set_null(2);
        row
    }

    #[test]
    fn columns_are_read_by_name() {
        let mut r = row();
        assert_eq!(r.text("id").unwrap(), "a1");
        assert_eq!(r.int("n").unwrap(), 7);
        assert_eq!(r.opt_text("note").unwrap(), None);
        assert_eq!(r.opt_int("note").unwrap(), None);
    }

    #[test]
    fn wrong_columns_are_errors_that_name_them() {
        let mut r = row();
        let missing = r.int("nope").unwrap_err().to_string();
        assert!(
            missing.contains("nope") && missing.contains("not in the query"),
            "{missing}"
        );
        assert!(r.text("n").unwrap_err().to_string().contains("number"));
        assert!(r.int("id").unwrap_err().to_string().contains("text"));
        assert!(r.text("note").unwrap_err().to_string().contains("NULL"));
    }
}
