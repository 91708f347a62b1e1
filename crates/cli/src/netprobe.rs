//! `bulkhead-netprobe`: the servers and probes of the privileged dataplane tests, run inside a
//! pod's network namespace with `ip netns exec`. Standard library only.
//!
//! * `serve --tcp 80,81 --udp 80,81`: echo servers until killed.
//! * `probe tcp|udp ADDRESS PORT [TIMEOUT_MS]`: exit 0 when the connection (TCP) or an echo (UDP)
//!   succeeds within the timeout, 1 otherwise.
//! * `hold ADDRESS PORT`: keep one TCP connection open, writing a byte every 50 ms; print `up`
//!   once, then `down` and exit 1 as soon as an echo fails to come back.
//! * `hold-many ADDRESS PORT COUNT`: keep COUNT TCP connections open, echoing a byte on each
//!   every round; print `up COUNT` once all are established, then `down` and exit 0 once no
//!   echo comes back on any of them (exit 1 after 60 s).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

fn ports(list: &str) -> Vec<u16> {
    list.split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

fn serve(args: &[String]) {
    let mut handles = Vec::new();
    let mut i = 0;
    while i + 1 < args.len() {
        let (kind, list) = (args[i].as_str(), ports(&args[i + 1]));
        for port in list {
            match kind {
                "--tcp" => {
                    let Ok(listener) = TcpListener::bind(("0.0.0.0", port)) else {
                        continue;
                    };
                    handles.push(std::thread::spawn(move || {
                        for stream in listener.incoming().flatten() {
                            std::thread::spawn(move || echo_tcp(stream));
                        }
                    }));
                }
                "--udp" => {
                    let Ok(socket) = UdpSocket::bind(("0.0.0.0", port)) else {
                        continue;
                    };
                    handles.push(std::thread::spawn(move || {
                        let mut buf = [0u8; 512];
                        while let Ok((n, from)) = socket.recv_from(&mut buf) {
                            let _ = socket.send_to(&buf[..n], from);
                        }
                    }));
                }
                _ => {}
            }
        }
        i += 2;
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for h in handles {
        let _ = h.join();
    }
}

fn echo_tcp(mut stream: TcpStream) {
    let mut buf = [0u8; 512];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn probe(args: &[String]) -> i32 {
    let (Some(kind), Some(addr), Some(port)) = (
        args.first(),
        args.get(1),
        args.get(2).and_then(|p| p.parse::<u16>().ok()),
    ) else {
        eprintln!("usage: probe tcp|udp ADDRESS PORT [TIMEOUT_MS]");
        return 2;
    };
    let timeout = Duration::from_millis(args.get(3).and_then(|t| t.parse().ok()).unwrap_or(500));
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return 2;
    };
    let target = SocketAddr::new(ip, port);
    let ok = match kind.as_str() {
        "tcp" => TcpStream::connect_timeout(&target, timeout).is_ok(),
        "udp" => {
            let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            UdpSocket::bind(bind).ok().is_some_and(|s| {
                let _ = s.set_read_timeout(Some(timeout));
                let mut buf = [0u8; 16];
                s.send_to(b"bulkhead", target).is_ok() && s.recv_from(&mut buf).is_ok()
            })
        }
        _ => return 2,
    };
    i32::from(!ok)
}

fn hold(args: &[String]) -> i32 {
    let (Some(addr), Some(port)) = (
        args.first()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok()),
        args.get(1).and_then(|p| p.parse::<u16>().ok()),
    ) else {
        return 2;
    };
    let Ok(mut stream) =
        TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_millis(1000))
    else {
        println!("down");
        return 1;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(400)));
    let mut announced = false;
    let mut buf = [0u8; 1];
    loop {
        if stream.write_all(b"x").is_err() || stream.read_exact(&mut buf).is_err() {
            println!("down");
            let _ = std::io::stdout().flush();
            return 1;
        }
        if !announced {
            println!("up");
            let _ = std::io::stdout().flush();
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ADDRESS PORT COUNT`.
fn target_and_count(args: &[String]) -> Option<(SocketAddr, usize)> {
    let addr = args.first()?.parse::<std::net::IpAddr>().ok()?;
    let port = args.get(1)?.parse::<u16>().ok()?;
    let count = args.get(2)?.parse::<usize>().ok()?;
    Some((SocketAddr::new(addr, port), count))
}

fn hold_many(args: &[String]) -> i32 {
    let Some((target, count)) = target_and_count(args) else {
        return 2;
    };
    let mut alive: Vec<TcpStream> = Vec::with_capacity(count);
    for _ in 0..count {
        let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_millis(1000))
        else {
            println!("connect failed after {}", alive.len());
            return 1;
        };
        let mut buf = [0u8; 1];
        let _ = stream.set_read_timeout(Some(Duration::from_millis(1000)));
        if stream.write_all(b"x").is_err() || stream.read_exact(&mut buf).is_err() {
            println!("no echo after {}", alive.len());
            return 1;
        }
        let _ = stream.set_nonblocking(true);
        alive.push(stream);
    }
    println!("up {count}");
    let _ = std::io::stdout().flush();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        for stream in &mut alive {
            let _ = stream.write_all(b"x");
        }
        std::thread::sleep(Duration::from_millis(150));
        // A connection whose echo did not come back within the round is down (its packets
        // are dropped); one that echoes stays.
        alive.retain_mut(|stream| {
            let mut buf = [0u8; 64];
            matches!(stream.read(&mut buf), Ok(n) if n > 0)
        });
        if alive.is_empty() {
            println!("down");
            let _ = std::io::stdout().flush();
            return 0;
        }
    }
    println!("still up {}", alive.len());
    1
}

/// `connect-bench ADDRESS PORT COUNT`: COUNT sequential TCP connects; prints p50 and p99 in
/// microseconds (connection setup is what policy costs: established packets skip it).
fn connect_bench(args: &[String]) -> i32 {
    let Some((target, count)) = target_and_count(args) else {
        return 2;
    };
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = std::time::Instant::now();
        match TcpStream::connect_timeout(&target, Duration::from_millis(1000)) {
            Ok(s) => drop(s),
            Err(e) => {
                eprintln!(
                    "connect {target} failed after {} connects: {e}",
                    times.len()
                );
                return 1;
            }
        }
        times.push(start.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    println!(
        "p50 {:.1} us, p99 {:.1} us over {count} connects",
        pct(0.5),
        pct(0.99)
    );
    0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("serve") => {
            serve(&args[1..]);
            0
        }
        Some("probe") => probe(&args[1..]),
        Some("hold") => hold(&args[1..]),
        Some("hold-many") => hold_many(&args[1..]),
        Some("connect-bench") => connect_bench(&args[1..]),
        _ => {
            eprintln!("usage: bulkhead-netprobe serve|probe|hold|hold-many|connect-bench ...");
            2
        }
    };
    std::process::exit(code);
}
