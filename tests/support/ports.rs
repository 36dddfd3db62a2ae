//! Test ports: shared by the cli tests (`support`) and the sampler's (`common`).

/// A 127.0.0.1 port that nothing listened on a moment ago (bound, then closed).
///
/// The port is taken below the kernel's ephemeral range (`ip_local_port_range`), where no
/// `bind(127.0.0.1:0)` of a test server running in parallel and no outgoing connection can
/// be given it between now and the moment the caller binds it; and never twice in one test
/// binary.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_100));
    // A start that differs between test binaries running at once, then a walk.
    let seed = std::process::id() as u64 * 7919
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    let span = u64::from(to - from);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..span {
        let port = from + ((seed + i * 4111) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}
