//! bench/quic/quinn-dgram: one-way QUIC datagrams over quinn 0.9 (Debian), the same protocol of output as
//! bench/quic/lib-dgram.mjs: the receiver prints {"side":"rx",...}, the sender {"side":"tx",...}, each with its
//! own CPU seconds over the window 1 s .. 1 + DUR s. quinn-udp sends with UDP GSO (sendmsg + UDP_SEGMENT) and
//! receives with recvmmsg. One tokio current-thread runtime per process: one core's worth of QUIC.
//!   quinn-dgram server ADDR CERT KEY DUR
//!   quinn-dgram client ADDR CERT DUR LEN RATE      (RATE 0: as fast as the connection takes them)
use std::{fs, net::SocketAddr, sync::{atomic::{AtomicU64, Ordering}, Arc}, time::{Duration, Instant}};

fn cpu_s() -> f64 {
    let s = fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // fields 14 and 15 (utime, stime) are at 11 and 12 after the comm field
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // The veth's MTU is 1500: 1452-byte UDP payloads fit, so 1200-byte datagrams fit in one QUIC packet.
    t.initial_max_udp_payload_size(1452);
    t.datagram_receive_buffer_size(Some(8 << 20));
    t.datagram_send_buffer_size(4 << 20);
    t
}

/// A UDP socket with 4 MiB kernel buffers (as every receiver in bench/quic/run.sh asks for).
fn udp_socket(addr: SocketAddr) -> std::net::UdpSocket {
    let sock = std::net::UdpSocket::bind(addr).unwrap();
    let r = socket2::SockRef::from(&sock);
    r.set_recv_buffer_size(4 << 20).unwrap();
    r.set_send_buffer_size(4 << 20).unwrap();
    sock
}

fn certs(path: &str) -> Vec<rustls::Certificate> {
    let pem = fs::read(path).unwrap();
    rustls_pemfile::certs(&mut &pem[..]).unwrap().into_iter().map(rustls::Certificate).collect()
}

async fn server(addr: SocketAddr, cert: &str, key: &str, dur: f64) {
    let pem = fs::read(key).unwrap();
    let k = rustls_pemfile::pkcs8_private_keys(&mut &pem[..]).unwrap().remove(0);
    let mut cfg = quinn::ServerConfig::with_single_cert(certs(cert), rustls::PrivateKey(k)).unwrap();
    cfg.transport_config(Arc::new(transport()));
    let ep = quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(cfg), udp_socket(addr), quinn::TokioRuntime).unwrap();
    eprintln!("server ready");
    let conn = ep.accept().await.unwrap().await.unwrap();
    let first = conn.read_datagram().await.unwrap();
    // Count in a task of its own (no timer per datagram); the measurement window is timed here.
    let counts = Arc::new((AtomicU64::new(1), AtomicU64::new(first.len() as u64)));
    let (c2, conn2) = (counts.clone(), conn.clone());
    tokio::spawn(async move {
        while let Ok(d) = conn2.read_datagram().await {
            c2.0.fetch_add(1, Ordering::Relaxed);
            c2.1.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (t0, c0) = (Instant::now(), cpu_s());
    let (n0, b0) = (counts.0.load(Ordering::Relaxed), counts.1.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs_f64(dur)).await;
    let secs = t0.elapsed().as_secs_f64();
    let (dn, db) = (counts.0.load(Ordering::Relaxed) - n0, counts.1.load(Ordering::Relaxed) - b0);
    let st = conn.stats();
    println!("{{\"side\":\"rx\",\"route\":\"quinn\",\"dgrams_per_s\":{},\"mbit_s\":{:.1},\"cpu_s\":{:.2},\"bytes\":{},\"secs\":{:.2},\"udp_rx_datagrams\":{},\"udp_tx_datagrams\":{}}}",
        (dn as f64 / secs) as u64, db as f64 * 8.0 / secs / 1e6, cpu_s() - c0, db, secs, st.udp_rx.datagrams, st.udp_tx.datagrams);
}

async fn client(addr: SocketAddr, cert: &str, dur: f64, len: usize, rate: f64) {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(cert) { roots.add(&c).unwrap(); }
    let mut cfg = quinn::ClientConfig::with_root_certificates(roots);
    cfg.transport_config(Arc::new(transport()));
    let mut ep = quinn::Endpoint::new(quinn::EndpointConfig::default(), None, udp_socket("0.0.0.0:0".parse().unwrap()), quinn::TokioRuntime).unwrap();
    ep.set_default_client_config(cfg);
    let conn = ep.connect(addr, "quic.test").unwrap().await.unwrap();
    eprintln!("client ready, max_datagram_size {:?}", conn.max_datagram_size());
    let payload = bytes::Bytes::from(vec![0u8; len]);
    let start = Instant::now();
    let (mut sent, mut dropped) = (0u64, 0u64);
    let (mut c0, mut c1, mut s0, mut s1, mut marked0, mut marked1) = (0.0, 0.0, 0, 0, false, false);
    loop {
        let el = start.elapsed().as_secs_f64();
        if !marked0 && el >= 1.0 { marked0 = true; c0 = cpu_s(); s0 = sent; }
        if !marked1 && el >= 1.0 + dur { marked1 = true; c1 = cpu_s(); s1 = sent; }
        if el >= dur + 1.5 { break; }
        let due = if rate > 0.0 { (el * rate) as u64 } else { sent + 32 };
        while sent < due {
            match conn.send_datagram(payload.clone()) {
                Ok(()) => sent += 1,
                Err(e) => { dropped += 1; if dropped == 1 { eprintln!("send_datagram: {e}"); } break; }
            }
        }
        // Let the connection driver packetise and send (it runs on this same thread).
        if rate > 0.0 { tokio::time::sleep(Duration::from_millis(1)).await; } else { tokio::task::yield_now().await; }
    }
    let st = conn.stats();
    println!("{{\"side\":\"tx\",\"route\":\"quinn\",\"sent\":{},\"sent_per_s\":{},\"cpu_s\":{:.2},\"udp_tx_datagrams\":{},\"udp_tx_transmits\":{},\"lost_packets\":{}}}",
        sent, ((s1 - s0) as f64 / dur) as u64, c1 - c0, st.udp_tx.datagrams, st.udp_tx.transmits, st.path.lost_packets);
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr: SocketAddr = a[2].parse().unwrap();
    match a[1].as_str() {
        "server" => rt.block_on(server(addr, &a[3], &a[4], a[5].parse().unwrap())),
        "client" => rt.block_on(client(addr, &a[3], a[4].parse().unwrap(), a[5].parse().unwrap(), a[6].parse().unwrap())),
        _ => panic!("usage: quinn-dgram server|client ..."),
    }
}
