//! The archive server: the build path's archive served over HTTP on 127.0.0.1, on a free port,
//! at one unguessable path, so the template's own download lines fetch it as they would fetch
//! the blob through its SAS URL. Everything else gets 404. It stops when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What stays unencoded in the file name: letters, digits and `.-_`.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');

/// A running server; dropping it stops it and joins its thread.
pub struct ArchiveServer {
    url: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl ArchiveServer {
    /// Serves the file at `archive` as `/<random>/<file_name>` on 127.0.0.1.
    pub fn start(archive: PathBuf, file_name: &str) -> std::io::Result<ArchiveServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let encoded: String =
            percent_encoding::utf8_percent_encode(file_name, PATH_SEGMENT).collect();
        let path = format!("/{}/{encoded}", uuid::Uuid::new_v4().simple());
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (stop_flag, count, wanted) = (Arc::clone(&stop), Arc::clone(&served), path.clone());
        let body = Arc::new(archive);
        let thread = std::thread::Builder::new()
            .name("aib-rehearsal-archive".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (body, wanted, count) =
                                (Arc::clone(&body), wanted.clone(), Arc::clone(&count));
                            // One thread per request: a stalled client cannot block the others.
                            std::thread::spawn(move || {
                                if answer(stream, &wanted, &body) {
                                    count.fetch_add(1, Ordering::SeqCst);
                                }
                            });
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        Ok(ArchiveServer {
            url: format!("http://127.0.0.1:{port}{path}"),
            stop,
            served,
            thread: Some(thread),
        })
    }

    /// The archive's URL (loopback only: no secret in it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many times the archive was sent in full.
    pub fn downloads(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for ArchiveServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request; true when the archive was sent.
fn answer(mut stream: TcpStream, wanted: &str, archive: &Path) -> bool {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    if path != wanted || !(method == "GET" || method == "HEAD") {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return false;
    }
    let Ok(mut file) = std::fs::File::open(archive) else {
        let _ = stream.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return false;
    };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(header.as_bytes()).is_err() {
        return false;
    }
    method == "HEAD" || std::io::copy(&mut file, &mut stream).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> (String, Vec<u8>) {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = TcpStream::connect(host).unwrap();
        write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        let at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&all[..at]).into_owned(),
            all[at + 4..].to_vec(),
        )
    }

    #[test]
    fn serves_the_archive_on_loopback_only_at_its_path_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.zip");
        std::fs::write(&file, b"PK-archive").unwrap();
        let server = ArchiveServer::start(file, "my app.zip").unwrap();
        assert!(
            server.url().starts_with("http://127.0.0.1:"),
            "{}",
            server.url()
        );
        assert!(server.url().ends_with("/my%20app.zip"), "{}", server.url());
        let (head, body) = get(server.url());
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"PK-archive");
        let other = server.url().replace("my%20app", "other");
        assert!(get(&other).0.starts_with("HTTP/1.1 404"));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(server.downloads(), 1);
        let address = server.url()["http://".len()..]
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        drop(server);
        assert!(
            TcpStream::connect(&address).is_err(),
            "the port still answers after the server stopped"
        );
    }
}
