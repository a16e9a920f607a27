//! The interactive console: a line editor with history (rustyline) on its own thread, since
//! reading a terminal blocks; each line goes to the shard that serves the console over a
//! channel and its output comes back the same way. Used for stdin (`rustre serve` on a
//! terminal, or `--repl`), the serial console of the image, and `rustre console` without a
//! command (over HTTP).

use crate::console::{Access, Backend, Console, Reply};
use std::future::Future;
use std::rc::Rc;

/// A line typed at the console and where its output goes.
#[derive(Debug)]
pub struct ReplRequest {
    /// The command line.
    pub line: String,
    /// The reply channel.
    pub reply: flume::Sender<Reply>,
}

/// Lines of history kept.
pub const HISTORY_LINES: usize = 500;

/// Longest line accepted.
pub const MAX_LINE: usize = 4096;

/// Runs a line-editing loop on this thread until end of input or `quit`: each line goes to
/// `run`, whose output is printed. Without a terminal it reads plain lines (scripts, pipes).
pub fn run_loop(prompt: &str, mut run: impl FnMut(&str) -> Option<Reply>) {
    let cfg = rustyline::Config::builder()
        .max_history_size(HISTORY_LINES)
        .map(|b| b.auto_add_history(true).build());
    let ed = match cfg {
        Ok(c) => rustyline::DefaultEditor::with_config(c),
        Err(e) => {
            log::error!("console: {e}");
            return;
        }
    };
    let mut ed = match ed {
        Ok(e) => e,
        Err(e) => {
            log::error!("console: cannot start the line editor: {e}");
            return;
        }
    };
    loop {
        match ed.readline(prompt) {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                if line.len() > MAX_LINE {
                    eprintln!("line too long ({} bytes, at most {MAX_LINE})", line.len());
                    continue;
                }
                if matches!(line, "quit" | "exit") {
                    return;
                }
                match run(line) {
                    Some(r) => {
                        print!("{}", r.output);
                        if !r.output.is_empty() && !r.output.ends_with('\n') {
                            println!();
                        }
                        use std::io::Write as _;
                        let _ = std::io::stdout().flush();
                    }
                    None => return,
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => {}
            Err(_) => return,
        }
    }
}

/// Starts the console thread for stdin; lines go to `tx`. The thread ends at end of input
/// (the node keeps serving).
pub fn spawn_stdin(tx: flume::Sender<ReplRequest>, prompt: String) -> std::io::Result<()> {
    std::thread::Builder::new().name("rustre-console".into()).spawn(move || {
        run_loop(&prompt, |line| {
            let (rtx, rrx) = flume::bounded(1);
            tx.send(ReplRequest { line: line.to_string(), reply: rtx }).ok()?;
            rrx.recv().ok()
        });
    })?;
    Ok(())
}

/// Serves console lines from `rx` on this shard until `stopped` completes. The local console
/// has admin rights (whoever holds the serial line or stdin owns the box).
pub async fn serve<B: Backend + 'static>(
    console: Rc<Console<B>>,
    rx: flume::Receiver<ReplRequest>,
    stopped: impl Future<Output = ()>,
) {
    let lines = async {
        while let Ok(req) = rx.recv_async().await {
            let r = console.execute(&req.line, Access::Admin).await;
            let _ = req.reply.send(r);
        }
    };
    futures_lite::future::or(lines, stopped).await;
}
