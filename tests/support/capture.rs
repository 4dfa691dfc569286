//! A `tracing` writer that keeps everything written, for tests that read the log.

/// A `tracing` writer that keeps everything written, for tests that read the log.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("logs are UTF-8")
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails naming the secret and where it showed: `shown` (a `Debug`, a `Display` or a log) must
/// contain none of `secrets`.
pub fn assert_clean(what: &str, shown: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !shown.contains(secret.as_str()),
            "{what} shows the secret {secret:?}: {shown}"
        );
    }
}
