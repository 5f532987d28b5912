//! Helpers for the remote-state and report tests: a test CA, a small real HTTP/1.1 server (TLS
//! or plain) on 127.0.0.1 whose answers each test scripts, a fake `/proc/sys` root, and the
//! built binary.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The built binary, with proxy variables removed: reqwest honours them, and a CI machine's
/// proxy must not stand between the binary and the test's own servers on 127.0.0.1.
pub fn hostguard() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hostguard"));
    for v in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        c.env_remove(v);
    }
    c
}

/// Run the binary with `args`, with stdin closed and a bound on its run time.
pub fn run(args: &[&str]) -> Output {
    let out = hostguard()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the hostguard binary runs");
    eprintln!(
        "$ hostguard {}\nexit {:?}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost.
pub struct TestCa {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn test_ca() -> TestCa {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "hostguard test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    TestCa {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// What the server does with a request.
pub enum Reply {
    /// Status, extra headers, body (sent with Content-Length).
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// Read the request, then say nothing for this long and close.
    Stall(Duration),
    /// 200 with no Content-Length, `n` bytes, then close: the size is only known by streaming.
    Stream(usize),
    /// Announce `n` bytes, then send one every `every`: each read succeeds, the whole never ends.
    Drip { n: usize, every: Duration },
    /// Announce `announced` bytes, send `sent`, close: a body cut short.
    Truncated { announced: usize, sent: Vec<u8> },
}

pub fn ok(body: &[u8]) -> Reply {
    Reply::Full(200, vec![("Content-Type".into(), "application/json".into())], body.to_vec())
}

pub fn status(code: u16) -> Reply {
    Reply::Full(code, vec![], format!("status {code}\n").into_bytes())
}

pub fn redirect(to: &str) -> Reply {
    Reply::Full(302, vec![("Location".into(), to.into())], Vec::new())
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A real server on 127.0.0.1; every request it got is kept. Stops when dropped.
pub struct Server {
    pub port: u16,
    pub tls: bool,
    pub requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Handler = Arc::new(handler);
        let (reqs, stopping, is_tls) = (requests.clone(), stop.clone(), tls.is_some());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let (handler, reqs, tls, stopping) = (handler.clone(), reqs.clone(), tls.clone(), stopping.clone());
                thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
                    match tls {
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).unwrap();
                            let mut s = rustls::StreamOwned::new(conn, tcp);
                            serve(&mut s, &handler, &reqs, &stopping);
                            s.conn.send_close_notify();
                            let _ = s.flush();
                        }
                        None => {
                            let mut s = tcp;
                            serve(&mut s, &handler, &reqs, &stopping);
                            let _ = s.shutdown(Shutdown::Both);
                        }
                    }
                });
            }
        });
        Server {
            port,
            tls: is_tls,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{}", if self.tls { "https" } else { "http" }, self.port, path)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request per connection (`Connection: close`), which is all hostguard needs.
fn serve<S: Read + Write>(s: &mut S, handler: &Handler, reqs: &Mutex<Vec<Request>>, stopping: &AtomicBool) {
    let Some(req) = read_request(s) else { return };
    reqs.lock().unwrap().push(req.clone());
    match handler(&req) {
        Reply::Full(code, headers, body) => {
            let mut head = format!("HTTP/1.1 {code} {}\r\nContent-Length: {}\r\nConnection: close\r\n", reason(code), body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
        Reply::Stall(d) => {
            let until = Instant::now() + d;
            while Instant::now() < until && !stopping.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
        }
        Reply::Stream(n) => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n");
            let chunk = vec![b' '; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len());
                if s.write_all(&chunk[..k]).is_err() {
                    break;
                }
                left -= k;
            }
        }
        Reply::Drip { n, every } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(head.as_bytes());
            for _ in 0..n {
                if stopping.load(Ordering::SeqCst) || s.write_all(b" ").and_then(|_| s.flush()).is_err() {
                    break;
                }
                thread::sleep(every);
            }
        }
        Reply::Truncated { announced, sent } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&sent);
        }
    }
    let _ = s.flush();
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        302 => "Found",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn read_request<S: Read>(s: &mut S) -> Option<Request> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body })
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `--root` with fake `/proc/sys` files, as the sysctl kind reads and writes them.
pub struct FakeRoot {
    pub dir: tempfile::TempDir,
}

impl FakeRoot {
    pub fn new(values: &[(&str, &str)]) -> FakeRoot {
        let dir = tempfile::tempdir().unwrap();
        for (key, value) in values {
            let p = dir.path().join("proc/sys").join(key.replace('.', "/"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("{value}\n")).unwrap();
        }
        FakeRoot { dir }
    }

    pub fn arg(&self) -> String {
        self.dir.path().display().to_string()
    }

    pub fn sysctl(&self, key: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("proc/sys").join(key.replace('.', "/")))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Every file and directory under the root with its content: equal snapshots mean the run
    /// touched nothing (no lock file, no temp file, no value).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.insert(p.clone(), None);
            walk(&p, out);
        } else {
            out.insert(p.clone(), Some(std::fs::read(&p).unwrap()));
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Write `text` to a file in `dir` and return its path as an argument.
pub fn file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}
