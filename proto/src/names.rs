//! What a name in the namespace may hold. The namenode refuses a new
//! name that breaks the rule; the shell escapes any such name stored
//! before the rule, so that a listing shows each entry on its own line as
//! it is.
//!
//! Refused: the C0 controls, DEL and the C1 controls (Unicode `Cc`: they
//! end lines and drive terminals, so a name could forge `ls` lines or
//! clear the screen), and the bidirectional embeddings, overrides and
//! isolates U+202A–U+202E and U+2066–U+2069 (they reorder what follows,
//! so `txt.exe` could show as `exe.txt`).

use std::borrow::Cow;

/// Whether `c` may not appear in a new name.
pub fn refused(c: char) -> bool {
    c.is_control() || bidi_control(c)
}

fn bidi_control(c: char) -> bool {
    ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Names `c` and why it is refused, for error texts:
/// `U+001B (a control character)`.
pub fn describe(c: char) -> String {
    let what = if bidi_control(c) {
        "a bidirectional control"
    } else {
        "a control character"
    };
    format!("U+{:04X} ({what})", c as u32)
}

/// `name` with every refused character written as Rust escapes it (`\n`,
/// `\t`, `\u{1b}`, `\u{202e}`), everything else as it is; borrowed when
/// nothing needs escaping.
pub fn escape_refused(name: &str) -> Cow<'_, str> {
    if !name.chars().any(refused) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if refused(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_refused_and_the_rest_is_not() {
        for c in [
            '\0', '\t', '\n', '\u{1b}', '\u{7f}', '\u{80}', '\u{9b}', '\u{9f}',
        ] {
            assert!(refused(c), "{c:?}");
            assert!(describe(c).ends_with("(a control character)"), "{c:?}");
        }
        for c in ['\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}'] {
            assert!(refused(c), "{c:?}");
            assert!(describe(c).ends_with("(a bidirectional control)"), "{c:?}");
        }
        for c in [
            'a', ' ', '\\', '\'', '"', 'é', '日', '🙂', '\u{a0}', '\u{2029}', '\u{206a}',
        ] {
            assert!(!refused(c), "{c:?}");
        }
        assert_eq!(describe('\u{1b}'), "U+001B (a control character)");
        assert_eq!(describe('\u{202e}'), "U+202E (a bidirectional control)");
    }

    #[test]
    fn escaping_touches_only_refused_characters() {
        assert!(matches!(escape_refused("plain é \\ 'q'"), Cow::Borrowed(_)));
        assert_eq!(
            escape_refused("a\u{1b}[2J\nb\tc\u{7f}\u{9b}d.\u{202e}txt\u{2066}"),
            "a\\u{1b}[2J\\nb\\tc\\u{7f}\\u{9b}d.\\u{202e}txt\\u{2066}"
        );
        assert_eq!(escape_refused("it's \"q\" \\n"), "it's \"q\" \\n");
    }
}
