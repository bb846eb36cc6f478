//! Nesting-depth check done on raw bytes before any parsing.
//!
//! serde_json recurses once per nesting level (its own limit is 128), so a
//! hostile 100,000-level value must be rejected before it reaches the parser;
//! this scan is iterative, allocation-free and linear in the input.

/// True if `bytes` opens more than `max` nested arrays/objects at any point.
/// Brackets inside JSON strings (including escaped quotes) are ignored.
/// Unbalanced input is not judged here: the parser reports it afterwards.
pub(crate) fn exceeds_depth(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::exceeds_depth;

    #[test]
    fn counts_containers_not_strings() {
        assert!(!exceeds_depth(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(exceeds_depth(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!exceeds_depth(br#"{"a":"[[[[[[\"[[["}"#, 1));
        assert!(!exceeds_depth(b"42", 0));
    }

    #[test]
    fn huge_nesting_is_cheap() {
        let deep = "[".repeat(100_000);
        assert!(exceeds_depth(deep.as_bytes(), 64));
    }
}
