//! The text cells of SQLite databases: setup wizards and connector stores
//! keep credentials there.

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::finding::Cell;

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        // Read the write-ahead log too, so recent rows are seen.
        Connection::open_with_flags(path, flags & !OpenFlags::SQLITE_OPEN_URI)
    } else {
        // immutable=1: no lock files, no journal, nothing written beside
        // the user's database.
        let uri = format!("file:{}?immutable=1", uri_escape(&path.to_string_lossy()));
        Connection::open_with_flags(uri, flags)
    }
}

fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for ch in path.chars() {
        match ch {
            '?' | '#' | '%' => out.push_str(&format!("%{:02X}", ch as u32)),
            _ => out.push(ch),
        }
    }
    out
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Calls `visit` with every text cell (and every blob cell that holds
/// text) of every table. Returns the number of cells visited, or the
/// reason the database could not be read; a table that cannot be read is
/// reported in `table_errors` and the others go on.
pub(crate) fn scan_database(
    path: &Path,
    table_errors: &mut Vec<String>,
    mut visit: impl FnMut(Cell, &[u8]),
) -> Result<u64, String> {
    let conn = open(path).map_err(|e| format!("cannot open as SQLite: {e}"))?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get::<_, String>(0))?.collect())
        .map_err(|e| format!("cannot list tables: {e}"))?;
    let mut cells = 0u64;
    for table in tables {
        let result = scan_table(&conn, &table, &mut cells, &mut visit);
        if let Err(e) = result {
            table_errors.push(format!("table {table}: {e}"));
        }
    }
    Ok(cells)
}

fn scan_table(
    conn: &Connection,
    table: &str,
    cells: &mut u64,
    visit: &mut impl FnMut(Cell, &[u8]),
) -> rusqlite::Result<()> {
    // Tables WITHOUT ROWID have no rowid; fall back to the row's position.
    let with_rowid = conn.prepare(&format!("SELECT rowid, * FROM {}", quote(table)));
    let (mut stmt, has_rowid) = match with_rowid {
        Ok(stmt) => (stmt, true),
        Err(_) => (
            conn.prepare(&format!("SELECT * FROM {}", quote(table)))?,
            false,
        ),
    };
    let names: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let first_value = usize::from(has_rowid);
    let mut rows = stmt.query([])?;
    let mut position = 0i64;
    while let Some(row) = rows.next()? {
        position += 1;
        let row_id = if has_rowid {
            row.get::<_, i64>(0).unwrap_or(position)
        } else {
            position
        };
        for (index, name) in names.iter().enumerate().skip(first_value) {
            let bytes = match row.get_ref(index)? {
                ValueRef::Text(text) => text,
                ValueRef::Blob(blob) if !blob.iter().take(1024).any(|&b| b == 0) => blob,
                _ => continue,
            };
            *cells += 1;
            visit(
                Cell {
                    table: table.to_owned(),
                    column: name.clone(),
                    row: row_id,
                },
                bytes,
            );
        }
    }
    Ok(())
}
