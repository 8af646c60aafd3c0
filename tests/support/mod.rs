//! Drives a real `healthpay serve` process over HTTP, as an outside caller would.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    port: u16,
    /// The flags it was started with beyond port and data dir (kept across restarts).
    extra: Vec<String>,
    agent: ureq::Agent,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        &self.body
    }
    /// The contract's error body, with the expected code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.body["error"].as_str()), (status, Some(code)), "unexpected answer: {}", self.body);
        assert_eq!(self.body["statusCode"], json!(status));
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(self.body["timestamp"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{}", self.body);
        assert!(self.body["correlationId"].as_str().is_some_and(|c| !c.is_empty()));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("healthpay-e2e-{name}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    pub fn start(name: &str) -> Server {
        Server::start_in(temp_dir(name), &[])
    }

    pub fn start_in(data_dir: PathBuf, extra: &[&str]) -> Server {
        let port = free_port();
        Server::spawn(data_dir, port, extra)
    }

    fn spawn(data_dir: PathBuf, port: u16, extra: &[&str]) -> Server {
        let log = std::fs::File::create(data_dir.join(format!("server-{port}-{}.log", uuid::Uuid::now_v7()))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_healthpay"))
            .args(["serve", "--port", &port.to_string(), "--data-dir", data_dir.to_str().unwrap()])
            .args(extra)
            .env_remove("HEALTHPAY_JWT_SECRET")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the healthpay binary starts");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build().into();
        let extra = extra.iter().map(|a| a.to_string()).collect();
        let server = Server { child, base: format!("http://127.0.0.1:{port}"), data_dir, port, extra, agent };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = self.agent.get(format!("{}/health", self.base)).call() {
                if r.status() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server on {} did not become healthy", self.base);
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or finish anything. (Reaped on restart or drop.)
    pub fn sigkill(&self) {
        Command::new("kill").args(["-KILL", &self.child.id().to_string()]).status().unwrap();
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap()
    }

    /// Starts the server again on the same data and port.
    pub fn restart(mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data_dir = self.data_dir.clone();
        let port = self.port;
        let extra = std::mem::take(&mut self.extra);
        std::mem::forget(self);
        Server::spawn(data_dir, port, &extra.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn token(&self, sub: &str, roles: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_healthpay"))
            .args(["token", "--sub", sub, "--roles", roles, "--data-dir", self.data_dir.to_str().unwrap()])
            .env_remove("HEALTHPAY_JWT_SECRET")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn request(&self, method: &str, path: &str, token: Option<&str>, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        self.try_request(method, path, token, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Like `request`, but a transport failure (the server is gone) is `Err`.
    pub fn try_request(&self, method: &str, path: &str, token: Option<&str>, headers: &[(&str, &str)], body: Option<&str>) -> Result<Reply, ureq::Error> {
        let url = format!("{}{}", self.base, path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(body.unwrap_or("").to_string()).unwrap();
        let mut response = self.agent.run(request)?;
        let headers = response.headers().iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Ok(Reply { status, body, headers })
    }

    pub fn post(&self, token: &str, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(token), &[], Some(&body.to_string()))
    }

    pub fn get(&self, token: &str, path: &str) -> Reply {
        self.request("GET", path, Some(token), &[], None)
    }

    pub fn metrics(&self) -> String {
        self.agent.get(format!("{}/metrics", self.base)).call().unwrap().body_mut().read_to_string().unwrap()
    }

    // The contract's flows, as steps.

    pub fn create_wallet(&self, token: &str) -> String {
        let reply = self.post(token, "/api/v2/commands/wallets/create", json!({"walletType": "personal", "currency": "EGP", "kycLevel": "basic"}));
        reply.expect(201)["walletId"].as_str().unwrap().to_string()
    }

    pub fn active_wallet(&self, token: &str, funds: Option<&str>) -> String {
        let id = self.create_wallet(token);
        self.post(token, &format!("/api/v2/commands/wallets/{id}/activate"), json!({})).expect(200);
        if let Some(amount) = funds {
            self.credit(token, &id, amount).expect(200);
        }
        id
    }

    pub fn credit(&self, token: &str, wallet: &str, amount: &str) -> Reply {
        let body = format!(r#"{{"amount": {amount}, "transactionType": "deposit", "reference": "DEP-1"}}"#);
        self.request("POST", &format!("/api/v2/commands/wallets/{wallet}/credit"), Some(token), &[], Some(&body))
    }

    pub fn debit(&self, token: &str, wallet: &str, amount: &str) -> Reply {
        let body = format!(r#"{{"amount": {amount}, "transactionType": "payment", "reference": "PAY-1"}}"#);
        self.request("POST", &format!("/api/v2/commands/wallets/{wallet}/debit"), Some(token), &[], Some(&body))
    }

    pub fn transfer(&self, token: &str, from: &str, to: &str, amount: &str) -> Reply {
        let body = format!(r#"{{"sourceWalletId": "{from}", "destinationWalletId": "{to}", "amount": {amount}, "reference": "TXF-1"}}"#);
        self.request("POST", "/api/v2/commands/transfers", Some(token), &[], Some(&body))
    }

    /// Polls a read route until `done` holds (read models are eventually consistent).
    pub fn eventually(&self, token: &str, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let reply = self.get(token, path);
            if reply.status == 200 && done(&reply.body) {
                return reply.body;
            }
            if Instant::now() > deadline {
                panic!("{path} did not settle within {within:?}; last answer {} {}", reply.status, reply.body);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn balance(&self, token: &str, wallet: &str, version_at_least: u64) -> f64 {
        let view =
            self.eventually(token, &format!("/api/v2/wallets/{wallet}"), Duration::from_secs(5), |v| v["version"].as_u64().unwrap_or(0) >= version_at_least);
        view["balance"].as_f64().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
