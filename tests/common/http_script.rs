//! A scripted HTTP/1.1 server on loopback that records every request (gunzipping bodies) and
//! answers as a test's responder function says: a status with headers and body, a delay, or a
//! dropped connection.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Request {
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn lines(&self) -> Vec<&str> {
        self.body.lines().collect()
    }
}

/// What the server does with a request.
pub enum Answer {
    Status(u16, Vec<(&'static str, String)>, String),
    /// Waits before answering 204.
    Late(Duration),
    /// Closes the connection without answering.
    Hangup,
}

pub fn status(code: u16) -> Answer {
    Answer::Status(code, Vec::new(), String::new())
}

type Responder = dyn Fn(usize, &Request) -> Answer + Send + Sync;

pub struct ScriptedServer {
    pub address: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedServer {
    /// Starts a server answering request `n` (from 0) with `responder(n, request)`.
    pub async fn start(
        responder: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
    ) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let responder: Arc<Responder> = Arc::new(responder);
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&recorded), Arc::clone(&responder)));
            }
        });
        ScriptedServer {
            address,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn recorded(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn serve(
    mut stream: TcpStream,
    recorded: Arc<Mutex<Vec<Request>>>,
    responder: Arc<Responder>,
) {
    let mut buffer = Vec::new();
    loop {
        // Read the head.
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let target = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or_default()
            .to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let raw: Vec<u8> = buffer[head_end..head_end + length].to_vec();
        buffer.drain(..head_end + length);
        let gzipped = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
        let body = if gzipped {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut text)
                .expect("a gzip body");
            text
        } else {
            String::from_utf8_lossy(&raw).to_string()
        };
        let request = Request {
            target,
            headers,
            body,
            at: Instant::now(),
        };
        let n = {
            let mut all = recorded.lock().expect("lock");
            all.push(request.clone());
            all.len() - 1
        };
        let (code, extra, text) = match responder(n, &request) {
            Answer::Status(code, extra, text) => (code, extra, text),
            Answer::Late(delay) => {
                tokio::time::sleep(delay).await;
                (204, Vec::new(), String::new())
            }
            Answer::Hangup => return,
        };
        let mut response = format!(
            "HTTP/1.1 {code} Scripted\r\nContent-Length: {}\r\n",
            text.len()
        );
        for (k, v) in extra {
            response.push_str(&format!("{k}: {v}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&text);
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
