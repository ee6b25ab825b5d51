//! Pass notes, aggregated for people: notes that differ only in their numbers become one line.
//!
//! A note is split into text and numbers; its *shape* is the text with every number masked. Notes of one
//! shape are merged: each number slot shows its range over the merged notes (`1322–144754 bytes`), or the
//! value when it never changed, and the merged count follows (`×64`). A number is a run of digits (with at
//! most one decimal point) that is not glued to a letter before it (so `IPv4`, `0xffff`, `RFC 9293`'s
//! section signs and names such as `tcp_sack` stay text). Shapes keep the order in which they first appear
//! in the (sorted) note list.

use std::fmt::Write as _;

/// One piece of a note.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Number(String),
}

fn split(note: &str) -> Vec<Piece> {
    let chars: Vec<char> = note.chars().collect();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let glued = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c.is_ascii_digit() && !glued {
            let start = i;
            let mut dot = false;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (chars[i] == '.'
                        && !dot
                        && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())))
            {
                dot |= chars[i] == '.';
                i += 1;
            }
            // `0xffff`, `2nd`: a digit run glued to a letter after it is a word, not a number.
            if i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '_') {
                text.extend(&chars[start..i]);
                continue;
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Number(chars[start..i].iter().collect()));
        } else {
            text.push(c);
            i += 1;
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// The notes of one shape, merged.
struct Group {
    shape: Vec<Option<String>>,
    /// Per number slot: (min, max) as (value, original text).
    ranges: Vec<((f64, String), (f64, String))>,
    count: u64,
}

/// Merges `notes` (distinct note, count) into lines `text ×count`, numbers masked into ranges.
pub fn aggregate(notes: &[(String, u64)]) -> Vec<String> {
    let mut groups: Vec<Group> = Vec::new();
    for (note, count) in notes {
        let pieces = split(note);
        let shape: Vec<Option<String>> = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => Some(t.clone()),
                Piece::Number(_) => None,
            })
            .collect();
        let numbers: Vec<(f64, String)> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Number(n) => Some((n.parse().unwrap_or(0.0), n.clone())),
                Piece::Text(_) => None,
            })
            .collect();
        match groups.iter_mut().find(|g| g.shape == shape) {
            Some(g) => {
                g.count += count;
                for (slot, n) in g.ranges.iter_mut().zip(numbers) {
                    if n.0 < slot.0 .0 {
                        slot.0 = n.clone();
                    }
                    if n.0 > slot.1 .0 {
                        slot.1 = n;
                    }
                }
            }
            None => groups.push(Group {
                shape,
                ranges: numbers.into_iter().map(|n| (n.clone(), n)).collect(),
                count: *count,
            }),
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let mut s = String::new();
            let mut slots = g.ranges.iter();
            for piece in &g.shape {
                match piece {
                    Some(t) => s.push_str(t),
                    None => {
                        let ((lo, lo_text), (hi, hi_text)) = slots.next().expect("one per slot");
                        if lo == hi {
                            s.push_str(lo_text);
                        } else {
                            let _ = write!(s, "{lo_text}–{hi_text}");
                        }
                    }
                }
            }
            let _ = write!(s, " ×{}", g.count);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn notes_differing_in_numbers_merge_into_ranges() {
        let merged = aggregate(&notes(&[
            (
                "SO_RCVBUF 131072 B, window 161004 B, RTT 20 ms: best 7990 KB/s (99 %)",
                1,
            ),
            (
                "SO_RCVBUF 16384 B, window 18824 B, RTT 40 ms: best 456 KB/s (97 %)",
                2,
            ),
            (
                "SO_RCVBUF 65536 B, window 70000 B, RTT 20 ms: best 3000.5 KB/s (98 %)",
                1,
            ),
        ]));
        assert_eq!(
            merged,
            vec![
                "SO_RCVBUF 16384–131072 B, window 18824–161004 B, RTT 20–40 ms: best 456–7990 KB/s (97–99 %) ×4"
            ]
        );
    }

    #[test]
    fn words_with_digits_stay_text_and_other_shapes_stay_apart() {
        let merged = aggregate(&notes(&[
            ("IPv4 checksum 0 (not computed)", 1),
            ("computed zero sent as 0xffff", 3),
            ("IPv4 checksum 0 (not computed)", 2),
            ("took 3.8× SO_SNDBUF", 1),
            ("took 4.7× SO_SNDBUF", 1),
            ("state seen: CLOSED", 2),
        ]));
        assert_eq!(
            merged,
            vec![
                "IPv4 checksum 0 (not computed) ×3",
                "computed zero sent as 0xffff ×3",
                "took 3.8–4.7× SO_SNDBUF ×2",
                "state seen: CLOSED ×2",
            ]
        );
    }
}
