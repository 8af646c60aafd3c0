//! The edge under hostile input: clients that open connections and send nothing, drip
//! their headers or bodies a byte at a time, or announce a body they never send, do
//! not keep a real caller out; each is cut off (or answered) within its timeout.
//!
//! Raw TCP on 127.0.0.1, so the tests control every byte and every pause.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{temp_dir, Server};

/// The header and body timeouts of the flooded server, in seconds.
const TIMEOUT: u64 = 3;

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connects to the server")
}

/// What the server did with a connection: answered (status and raw answer), or closed it
/// without a word.
#[derive(Debug)]
enum Ending {
    Answered(u16, String),
    Closed,
}

/// Reads whatever the server sends until `deadline`: `None` if the connection is still
/// open and silent then; otherwise the first complete answer, or `Closed`.
fn read_answer(stream: &mut TcpStream, deadline: Instant) -> Option<Ending> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(answer) = complete_answer(&received) {
            return Some(answer);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return Some(complete_answer(&received).unwrap_or(Ending::Closed)),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(Ending::Closed), // reset
        }
    }
}

/// A whole answer (head, and as much body as its Content-Length says) in `received`.
fn complete_answer(received: &[u8]) -> Option<Ending> {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let length = head
        .lines()
        .find_map(|line| line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("content-length")))
        .map_or(0, |(_, value)| value.trim().parse::<usize>().unwrap());
    if body.len() < length {
        return None;
    }
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    Some(Ending::Answered(status, text.into_owned()))
}

/// Sends `request` on a new connection and waits up to `within` for the answer.
fn exchange(port: u16, request: &str, within: Duration) -> Option<Ending> {
    let deadline = Instant::now() + within;
    let mut stream = connect(port);
    stream.write_all(request.as_bytes()).unwrap();
    read_answer(&mut stream, deadline)
}

/// How long a dripping client keeps at it before the test gives up on the server.
const GIVE_UP: Duration = Duration::from_secs(3 * TIMEOUT);

/// Sends a request's headers one byte a second; returns how long after the first byte
/// the server cut the connection off.
fn drip_headers(port: u16) -> (Duration, Ending) {
    let mut stream = connect(port);
    let request = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {}\r\n\r\n", "a".repeat(64));
    let started = Instant::now();
    for byte in request.as_bytes().iter().take_while(|_| started.elapsed() < GIVE_UP) {
        if stream.write_all(&[*byte]).is_err() {
            return (started.elapsed(), Ending::Closed);
        }
        if let Some(ending) = read_answer(&mut stream, Instant::now() + Duration::from_secs(1)) {
            return (started.elapsed(), ending);
        }
    }
    panic!("a connection dripping its headers was still open after {:?}", started.elapsed());
}

/// Sends a whole head (a valid token), then the announced body four bytes a second;
/// returns how long after the head the server answered or closed.
fn drip_body(port: u16, token: &str, wallet: &str) -> (Duration, Ending) {
    let body = format!(r#"{{"amount": 1, "transactionType": "deposit", "reference": "DRIP"}}{}"#, " ".repeat(4));
    let mut stream = connect(port);
    let head = format!(
        "POST /api/v2/commands/wallets/{wallet}/credit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    for byte in body.as_bytes().iter().take_while(|_| started.elapsed() < GIVE_UP) {
        if stream.write_all(&[*byte]).is_err() {
            return (started.elapsed(), read_answer(&mut stream, Instant::now()).unwrap_or(Ending::Closed));
        }
        if let Some(ending) = read_answer(&mut stream, Instant::now() + Duration::from_millis(250)) {
            return (started.elapsed(), ending);
        }
    }
    panic!("a request dripping its body was still unanswered after {:?}", started.elapsed());
}

/// Asserts that a cut-off happened within the timeout (give or take scheduling).
#[track_caller]
fn assert_within_timeout(what: &str, after: Duration, timeout: u64) {
    let (earliest, latest) = (Duration::from_millis(timeout * 1000 - 1000), Duration::from_millis(timeout * 1000 + 2500));
    assert!(after >= earliest && after <= latest, "{what} ended after {after:?}; the timeout is {timeout} s");
}

#[test]
fn idle_and_dripping_connections_do_not_keep_a_real_caller_out() {
    let timeout = TIMEOUT.to_string();
    let server = Server::start_in(temp_dir("edge-flood"), &["--header-timeout-seconds", &timeout, "--body-timeout-seconds", &timeout]);
    let alice = server.token("alice", "");
    let wallet = server.active_wallet(&alice, Some("100"));
    let port = server.port();
    let read_wallet = format!("GET /api/v2/wallets/{wallet} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {alice}\r\nConnection: close\r\n\r\n");

    let flooded = Instant::now();
    let mut idle: Vec<TcpStream> = (0..200).map(|_| connect(port)).collect();
    std::thread::scope(|scope| {
        let header_drips: Vec<_> = (0..20).map(|_| scope.spawn(|| drip_headers(port))).collect();
        let body_drips: Vec<_> = (0..10).map(|_| scope.spawn(|| drip_body(port, &alice, &wallet))).collect();
        std::thread::sleep(Duration::from_millis(500));

        // A real caller, on new connections, while the flood holds all of its own.
        for _ in 0..3 {
            match exchange(port, &read_wallet, Duration::from_secs(2)) {
                Some(Ending::Answered(200, answer)) => assert!(answer.contains(&wallet), "{answer}"),
                other => panic!("a real caller during the flood was not answered 200 within 2 s: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let served = flooded.elapsed();
        assert!(served < Duration::from_secs(TIMEOUT), "the real caller was served after {served:?}, when the flood may already be cut off");

        for drip in header_drips {
            let (after, ending) = drip.join().unwrap();
            assert!(matches!(ending, Ending::Closed), "a connection dripping its headers got {ending:?}");
            assert_within_timeout("a connection dripping its headers", after, TIMEOUT);
        }
        for drip in body_drips {
            let (after, ending) = drip.join().unwrap();
            match ending {
                Ending::Answered(408, answer) => assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}"),
                other => panic!("a request dripping its body got {other:?}"),
            }
            assert_within_timeout("a request dripping its body", after, TIMEOUT);
        }
    });

    // The idle connections were closed by the server once their header timeout passed.
    let deadline = flooded + Duration::from_millis(TIMEOUT * 1000 + 2500);
    for (i, stream) in idle.iter_mut().enumerate() {
        match read_answer(stream, deadline) {
            Some(Ending::Closed) => {}
            other => panic!("idle connection {i} was not closed by {:?}: {other:?}", deadline - flooded),
        }
    }
    // And the dripped credits were never applied.
    assert_eq!(server.balance(&alice, &wallet, 3), 100.0);
}

/// The server's open sockets (its listener, its connections, the runtime's own).
#[cfg(target_os = "linux")]
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
#[cfg(target_os = "linux")]
fn beyond_max_connections_new_connections_wait_unaccepted() {
    const CAP: usize = 20;
    let server = Server::start_in(temp_dir("edge-cap"), &["--max-connections", &CAP.to_string(), "--header-timeout-seconds", "2"]);
    let port = server.port();
    let baseline = sockets_of(server.pid());

    let flooded = Instant::now();
    let _idle: Vec<TcpStream> = (0..CAP + 10).map(|_| connect(port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = sockets_of(server.pid());
    assert!(during <= baseline + CAP, "{during} sockets open with a cap of {CAP} connections (baseline {baseline})");
    assert!(during + 5 >= baseline + CAP, "only {during} sockets open: the flood was not accepted up to the cap (baseline {baseline})");

    // A real caller waits in the backlog until idle connections time out and free slots.
    let asked = Instant::now();
    let answer = std::thread::scope(|scope| {
        let caller = scope.spawn(|| exchange(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", Duration::from_secs(6)));
        while !caller.is_finished() {
            let open = sockets_of(server.pid());
            assert!(open <= baseline + CAP, "{open} sockets open with a cap of {CAP} connections (baseline {baseline})");
            std::thread::sleep(Duration::from_millis(100));
        }
        caller.join().unwrap()
    });
    let waited = asked.elapsed();
    assert!(matches!(answer, Some(Ending::Answered(200, _))), "the caller beyond the cap got {answer:?}");
    assert!(waited >= Duration::from_secs(1), "the caller beyond the cap was answered after {waited:?}, before any slot was free");
    assert!(flooded.elapsed() < Duration::from_secs(5), "the caller was answered only after {:?}", flooded.elapsed());
}

#[test]
fn a_request_without_a_valid_token_is_refused_before_its_body_arrives() {
    // A long body timeout: a prompt answer cannot be that timeout's doing.
    let server = Server::start_in(temp_dir("edge-auth"), &["--body-timeout-seconds", "60"]);
    let alice = server.token("alice", "");
    let port = server.port();
    let head = |authorization: &str, expect: &str| {
        format!(
            "POST /api/v2/commands/wallets/create HTTP/1.1\r\nHost: 127.0.0.1\r\n{authorization}{expect}\
             Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
        )
    };
    for (authorization, expect) in
        [("", ""), ("Authorization: Bearer not-a-token\r\n", ""), ("", "Expect: 100-continue\r\n"), ("Authorization: Basic YTpi\r\n", "")]
    {
        let asked = Instant::now();
        match exchange(port, &head(authorization, expect), Duration::from_secs(2)) {
            Some(Ending::Answered(401, answer)) => assert!(answer.contains("UNAUTHENTICATED"), "{answer}"),
            other => panic!("{authorization:?}{expect:?} with a body never sent: {other:?} within 2 s"),
        }
        assert!(asked.elapsed() < Duration::from_secs(1), "answered after {:?}", asked.elapsed());
    }

    // With a valid token the same request waits for its body.
    let mut stream = connect(port);
    stream.write_all(head(&format!("Authorization: Bearer {alice}\r\n"), "").as_bytes()).unwrap();
    let ending = read_answer(&mut stream, Instant::now() + Duration::from_millis(1500));
    assert!(ending.is_none(), "an authenticated request was answered before its body arrived: {ending:?}");
}
