//! `*` / `?` wildcard patterns as ALB rule conditions use them: `*` matches zero or more
//! characters, `?` exactly one. Patterns are compiled once per snapshot; the common shapes
//! (exact, prefix `abc*`, suffix `*abc`) avoid the general matcher.

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    kind: Kind,
    case_insensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    Any,
    Glob(Box<[u8]>),
}

impl Pattern {
    /// Compiles `pattern`; with `case_insensitive`, ASCII letters match either case.
    pub fn new(pattern: &str, case_insensitive: bool) -> Self {
        let bytes = pattern.as_bytes();
        let wild = |b: &u8| *b == b'*' || *b == b'?';
        let stars = bytes.iter().filter(|b| **b == b'*').count();
        let qs = bytes.iter().filter(|b| **b == b'?').count();
        let boxed = |s: &[u8]| s.to_vec().into_boxed_slice();
        let kind = if !bytes.iter().any(wild) {
            Kind::Exact(boxed(bytes))
        } else if qs == 0 && stars == bytes.len() {
            Kind::Any
        } else if qs == 0 && stars == 1 && bytes.last() == Some(&b'*') {
            Kind::Prefix(boxed(&bytes[..bytes.len() - 1]))
        } else if qs == 0 && stars == 1 && bytes.first() == Some(&b'*') {
            Kind::Suffix(boxed(&bytes[1..]))
        } else {
            Kind::Glob(boxed(bytes))
        };
        Self { kind, case_insensitive }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let t = text.as_bytes();
        let ci = self.case_insensitive;
        let eq = |a: &[u8], b: &[u8]| {
            if ci {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match &self.kind {
            Kind::Exact(p) => eq(p, t),
            Kind::Any => true,
            Kind::Prefix(p) => t.len() >= p.len() && eq(p, &t[..p.len()]),
            Kind::Suffix(p) => t.len() >= p.len() && eq(p, &t[t.len() - p.len()..]),
            Kind::Glob(p) => glob_match(p, t, ci),
        }
    }
}

/// General wildcard match, linear-time backtracking over the last `*`.
pub fn glob_match(pat: &[u8], text: &[u8], case_insensitive: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if case_insensitive {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pat.len() && (pat[p] == b'?' || eq(pat[p], text[t])) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes() {
        let m = |p: &str, t: &str| Pattern::new(p, false).matches(t);
        assert!(m("/api", "/api") && !m("/api", "/api/"));
        assert!(m("/api/*", "/api/") && m("/api/*", "/api/x/y") && !m("/api/*", "/ap"));
        assert!(m("*.jpg", "/a/b.jpg") && !m("*.jpg", "/a/b.png"));
        assert!(m("*", "") && m("**", "anything"));
        assert!(m("/img/?.png", "/img/a.png") && !m("/img/?.png", "/img/ab.png"));
        assert!(m("/a*b*c", "/axxbyyc") && !m("/a*b*c", "/axxbyy"));
        assert!(!m("/API", "/api"));
        assert!(Pattern::new("*.Example.COM", true).matches("www.example.com"));
    }

    fn reference(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, _) => t.is_empty(),
            (Some(b'*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
            (Some(_), None) => false,
            (Some(b'?'), Some(_)) => reference(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a == b && reference(&p[1..], &t[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            prop_assert_eq!(Pattern::new(&p, false).matches(&t), reference(p.as_bytes(), t.as_bytes()));
        }
    }
}
