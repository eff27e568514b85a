//! [`Problems`]: a test's mismatches, collected and reported all at once, so a failure shows the
//! whole picture instead of the first difference.

#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    /// Records `msg()` unless `ok`.
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(msg());
        }
    }

    /// Records a mismatch between `actual` and `expected`.
    pub fn eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        what: impl std::fmt::Display,
        actual: T,
        expected: T,
    ) {
        if actual != expected {
            self.0
                .push(format!("{what}: expected {expected:?}, got {actual:?}"));
        }
    }

    /// Panics with every recorded problem and `context` (rows, logs) if there is any.
    pub fn assert_none(self, context: &str) {
        assert!(
            self.0.is_empty(),
            "{} problem(s):\n  - {}\n{context}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}
