//! CSV output: one row per copy, RFC 4180 quoting, and no cell that a
//! spreadsheet would run as a formula.

use std::io::{self, Write};

use crate::finding::SecretGroup;

fn field(value: &str) -> String {
    // A leading =, +, - or @ makes spreadsheets evaluate the cell.
    let guarded = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

pub(super) fn write(groups: &[SecretGroup<'_>], out: &mut dyn Write) -> io::Result<()> {
    let reveal = groups.iter().any(|g| g.secret.is_some());
    let mut header = String::from(
        "fingerprint,rule,provider,severity,path,line,column,surface,decoder,cell_table,cell_column,cell_row,commit,author,date,present_at_head,tool,copies,preview,found_by,custody,validation,validated_at",
    );
    if reveal {
        header.push_str(",secret");
    }
    writeln!(out, "{header}")?;
    for group in groups {
        for location in &group.locations {
            let cell = location.cell.as_ref();
            let mut row = vec![
                group.fingerprint.to_hex(),
                group.rule.id.clone(),
                group.rule.provider.clone(),
                group.rule.severity.as_str().to_owned(),
                location.path.clone(),
                location.line.to_string(),
                location.column.to_string(),
                location.surface.as_str().to_owned(),
                location
                    .decoder
                    .map(|d| d.as_str().to_owned())
                    .unwrap_or_default(),
                cell.map(|c| c.table.clone()).unwrap_or_default(),
                cell.map(|c| c.column.clone()).unwrap_or_default(),
                cell.map(|c| c.row.to_string()).unwrap_or_default(),
                location
                    .commit
                    .as_ref()
                    .map(|c| c.id.clone())
                    .unwrap_or_default(),
                location
                    .commit
                    .as_ref()
                    .map(|c| format!("{} <{}>", c.author, c.email))
                    .unwrap_or_default(),
                location
                    .commit
                    .as_ref()
                    .map(|c| c.date.clone())
                    .unwrap_or_default(),
                location
                    .present_at_head
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                location.tool.clone().unwrap_or_default(),
                group.locations.len().to_string(),
                group.preview.to_owned(),
                location.found_by.as_str().to_owned(),
                group.custody.unwrap_or_default().to_owned(),
                group
                    .validation
                    .map(|v| v.status.as_str().to_owned())
                    .unwrap_or_default(),
                group
                    .validation
                    .map(|v| v.checked_at.clone())
                    .unwrap_or_default(),
            ];
            if reveal {
                row.push(group.secret.unwrap_or_default().to_owned());
            }
            let row: Vec<String> = row.iter().map(|v| field(v)).collect();
            writeln!(out, "{}", row.join(","))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn quotes_and_guards() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
        assert_eq!(
            field("-----BEGIN KEY----- ****"),
            "'-----BEGIN KEY----- ****"
        );
    }
}
