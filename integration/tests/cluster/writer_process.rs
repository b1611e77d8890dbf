//! A writer in its own process, to be killed -9 while it holds a file
//! open.

/// An `hflush_writer` process (see `src/bin/hflush_writer.rs`) that has
/// hflushed its first bytes and holds the file open; killed -9 when
/// dropped, so a failed test leaves no writer behind.
pub struct HflushWriter(std::process::Child);

impl HflushWriter {
    /// Starts one writing `flushed` hflushed bytes then `extra` more of
    /// `payload(flushed + extra, seed)` to `path`; returns once it
    /// reported the hflush.
    pub async fn start(
        namenode: &str,
        path: &str,
        flushed: usize,
        extra: usize,
        seed: u64,
    ) -> anyhow::Result<HflushWriter> {
        use anyhow::Context;
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut writer = HflushWriter(
            Command::new(env!("CARGO_BIN_EXE_hflush_writer"))
                .args([
                    namenode.to_string(),
                    path.to_string(),
                    flushed.to_string(),
                    extra.to_string(),
                    seed.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .context("starting hflush_writer")?,
        );
        let stdout = writer.0.stdout.take().context("writer stdout")?;
        let reading = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .map(|_| line)
        });
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), reading)
            .await
            .context("hflush_writer did not report its hflush within 60 s")???;
        anyhow::ensure!(
            line.trim_end() == format!("flushed {flushed}"),
            "hflush_writer said {line:?}"
        );
        Ok(writer)
    }

    /// kill -9: no chance to close anything.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.0.kill()?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for HflushWriter {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
