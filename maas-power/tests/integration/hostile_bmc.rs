//! The `ipmi-rs` backend against a scripted BMC on loopback that answers with the datagrams
//! on which `ipmi-rs` 0.6 panics (a truncated ASF pong, HMAC-SHA256 integrity chosen in the
//! Open Session Response, a truncated RAKP 4, an encrypted payload that is not whole AES
//! blocks, a BMC without RMCP+): every call ends in an error of the right class, not a
//! panic. The same BMC answering correctly is a working session, so the hostile answers are
//! the only difference.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use maas_power::ipmi::crypto::{Rakp, SessionKeys, key_bytes};
use maas_power::ipmi::wire::{self, Datagram, Response, payload};
use maas_power::ipmi::{Backend, IpmiBlocking, Timing};
use maas_power::params::{CipherSuite, IpmiParams, Privilege};
use maas_power::{BlockingPowerDriver, ErrorClass, PowerError, PowerState};

/// What the scripted BMC gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    None,
    ShortPong,
    Sha256Integrity,
    ShortRakp4,
    PartialAesBlock,
    NoRmcpPlus,
}

const BMC_ID: u32 = 0x1122_3344;
const RC: [u8; 16] = [9; 16];
const GUID: [u8; 16] = [5; 16];

struct Bmc {
    flaw: Flaw,
    console_id: u32,
    rm: [u8; 16],
    role: u8,
    user: Vec<u8>,
    keys: Option<SessionKeys>,
    seq: u32,
}

impl Bmc {
    fn rakp(&self) -> (Vec<u8>, Vec<u8>) {
        let kuid = key_bytes("password");
        let r = Rakp {
            suite: CipherSuite::Suite3,
            kuid: &kuid,
            kg: &[],
            console_id: self.console_id,
            bmc_id: BMC_ID,
            rm: self.rm,
            rc: RC,
            guid: GUID,
            role: self.role,
            user: &self.user,
        };
        let sik = r.sik();
        (r.rakp2_auth_code(), r.rakp4_icv(&sik))
    }

    fn answer(&mut self, d: &[u8]) -> Option<Vec<u8>> {
        if d.get(3) == Some(&0x06) {
            let mut pong = vec![
                0x06, 0x00, 0xff, 0x06, 0, 0, 0x11, 0xbe, 0x40, d[9], 0, 0x10,
            ];
            let data = [0, 0, 0x11, 0xbe, 0, 0, 0, 0, 0x81, 0, 0, 0, 0, 0, 0, 0];
            let n = if self.flaw == Flaw::ShortPong { 3 } else { 16 };
            pong.extend_from_slice(&data[..n]);
            return Some(pong);
        }
        match wire::parse(d).ok()? {
            Datagram::V15 { message, .. } => {
                let v2 = if self.flaw == Flaw::NoRmcpPlus {
                    0
                } else {
                    0x02
                };
                let r = Response {
                    netfn: 0x07,
                    cmd: message[5],
                    rq_seq: message[4] >> 2,
                    completion: 0,
                    data: vec![1, 0x84, 0, v2, 0, 0, 0, 0],
                };
                Some(wire::emit_v15(0, 0, 0, None, &wire::emit_response(&r)))
            }
            Datagram::V20 {
                payload_type: payload::OPEN_SESSION_REQUEST,
                payload: p,
                ..
            } => {
                self.console_id = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
                let integrity = if self.flaw == Flaw::Sha256Integrity {
                    4
                } else {
                    1
                };
                let mut r = vec![p[0], 0, 4, 0];
                r.extend_from_slice(&self.console_id.to_le_bytes());
                r.extend_from_slice(&BMC_ID.to_le_bytes());
                r.extend_from_slice(&[0, 0, 0, 8, 1, 0, 0, 0]);
                r.extend_from_slice(&[1, 0, 0, 8, integrity, 0, 0, 0]);
                r.extend_from_slice(&[2, 0, 0, 8, 1, 0, 0, 0]);
                Some(wire::emit_v20_head(
                    payload::OPEN_SESSION_RESPONSE,
                    false,
                    false,
                    0,
                    0,
                    &r,
                ))
            }
            Datagram::V20 {
                payload_type: payload::RAKP1,
                payload: p,
                ..
            } => {
                self.rm.copy_from_slice(&p[8..24]);
                self.role = p[24];
                self.user = p[28..28 + usize::from(p[27])].to_vec();
                let mut r = vec![p[0], 0, 0, 0];
                r.extend_from_slice(&self.console_id.to_le_bytes());
                r.extend_from_slice(&RC);
                r.extend_from_slice(&GUID);
                r.extend_from_slice(&self.rakp().0);
                Some(wire::emit_v20_head(payload::RAKP2, false, false, 0, 0, &r))
            }
            Datagram::V20 {
                payload_type: payload::RAKP3,
                payload: p,
                ..
            } => {
                let (_, icv) = self.rakp();
                let kuid = key_bytes("password");
                let sik = Rakp {
                    suite: CipherSuite::Suite3,
                    kuid: &kuid,
                    kg: &[],
                    console_id: self.console_id,
                    bmc_id: BMC_ID,
                    rm: self.rm,
                    rc: RC,
                    guid: GUID,
                    role: self.role,
                    user: &self.user,
                }
                .sik();
                self.keys = Some(SessionKeys::derive(CipherSuite::Suite3, &sik));
                let mut r = vec![p[0], 0, 0, 0];
                r.extend_from_slice(&self.console_id.to_le_bytes());
                r.extend_from_slice(&icv);
                let mut d = wire::emit_v20_head(payload::RAKP4, false, false, 0, 0, &r);
                if self.flaw == Flaw::ShortRakp4 {
                    d.truncate(20);
                }
                Some(d)
            }
            Datagram::V20 {
                payload_type: payload::IPMI,
                payload: p,
                ..
            } => {
                let keys = self.keys.as_ref()?;
                let m = keys.decrypt(p)?;
                let r = Response {
                    netfn: (m[1] >> 2) | 1,
                    cmd: m[5],
                    rq_seq: m[4] >> 2,
                    completion: 0,
                    data: if m[5] == 0x01 {
                        vec![0x01, 0, 0]
                    } else {
                        vec![]
                    },
                };
                let mut sealed = keys.encrypt([3; 16], &wire::emit_response(&r));
                if self.flaw == Flaw::PartialAesBlock {
                    sealed.truncate(sealed.len() - 8);
                }
                self.seq += 1;
                let mut d = wire::emit_v20_head(
                    payload::IPMI,
                    true,
                    true,
                    self.console_id,
                    self.seq,
                    &sealed,
                );
                let pad = (4 - (d.len() - 4 + 2) % 4) % 4;
                d.extend(std::iter::repeat_n(0xff, pad));
                d.push(u8::try_from(pad).unwrap());
                d.push(0x07);
                let code = keys.integrity(&d[4..]);
                d.extend_from_slice(&code);
                Some(d)
            }
            _ => None,
        }
    }
}

/// Serves `flaw` on a loopback port until dropped (bounded to 20 s).
struct Scripted {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    fn start(flaw: Flaw) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut bmc = Bmc {
                flaw,
                console_id: 0,
                rm: [0; 16],
                role: 0,
                user: Vec::new(),
                keys: None,
                seq: 0,
            };
            let end = Instant::now() + Duration::from_secs(20);
            let mut buf = [0u8; 1024];
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(a) = bmc.answer(&buf[..n]) {
                    let _ = sock.send_to(&a, from);
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn params(&self) -> IpmiParams {
        IpmiParams {
            power_address: format!("127.0.0.1:{}", self.port),
            power_user: "admin".into(),
            power_pass: "password".into(),
            privilege_level: Privilege::Admin,
            ..IpmiParams::default()
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn timing() -> Timing {
    Timing {
        retransmit: Duration::from_millis(300),
        deadline: Duration::from_secs(3),
    }
}

fn query_blocking(flaw: Flaw) -> Result<PowerState, PowerError> {
    let bmc = Scripted::start(flaw);
    let mut d = IpmiBlocking::new(bmc.params()).unwrap();
    d.set_backend(Backend::IpmiRs).unwrap().set_timing(timing());
    d.power_query()
}

#[test]
fn the_scripted_bmc_is_a_working_bmc() {
    assert_eq!(query_blocking(Flaw::None).unwrap(), PowerState::On);
}

#[test]
fn hostile_answers_are_errors_not_panics() {
    for (flaw, class, words) in [
        (Flaw::ShortPong, ErrorClass::Protocol, "malformed ASF pong"),
        (
            Flaw::Sha256Integrity,
            ErrorClass::Protocol,
            "other than cipher suite 3",
        ),
        (Flaw::ShortRakp4, ErrorClass::Protocol, "malformed RAKP 4"),
        (
            Flaw::PartialAesBlock,
            ErrorClass::Protocol,
            "whole AES blocks",
        ),
        (Flaw::NoRmcpPlus, ErrorClass::Unsupported, "IPMI 1.5 only"),
    ] {
        let t0 = Instant::now();
        let e = query_blocking(flaw).unwrap_err();
        assert_eq!(e.class(), class, "{flaw:?}: {e}");
        assert!(e.to_string().contains(words), "{flaw:?}: {e}");
        // Refused at once, not by waiting for the deadline.
        assert!(t0.elapsed() < timing().deadline, "{flaw:?}");
    }
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn hostile_answers_on_tokio() {
    use maas_power::PowerDriver;
    use maas_power::ipmi::Ipmi;
    for (flaw, ok) in [
        (Flaw::None, true),
        (Flaw::PartialAesBlock, false),
        (Flaw::Sha256Integrity, false),
    ] {
        let bmc = Scripted::start(flaw);
        let mut d = Ipmi::new(bmc.params()).unwrap();
        // ADMINISTRATOR, suite 3, no Kg: the automatic choice is ipmi-rs.
        d.set_timing(timing());
        let r = d.power_query().await;
        assert_eq!(r.is_ok(), ok, "{flaw:?}: {r:?}");
        if ok {
            assert_eq!(r.unwrap(), PowerState::On);
        } else {
            assert_eq!(r.unwrap_err().class(), ErrorClass::Protocol, "{flaw:?}");
        }
    }
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn ipmi_rs_sessions_wait_for_a_permit() {
    use maas_power::PowerDriver;
    use maas_power::ipmi::Ipmi;
    let bmc = Scripted::start(Flaw::None);
    let limit = Arc::new(tokio::sync::Semaphore::new(0));
    let mut d = Ipmi::new(bmc.params()).unwrap();
    d.set_timing(timing()).set_blocking_limit(limit.clone());
    // No permit: the session does not start (well past a session's few milliseconds).
    let waiting = tokio::time::timeout(Duration::from_millis(500), d.power_query()).await;
    assert!(waiting.is_err());
    limit.add_permits(1);
    assert_eq!(d.power_query().await.unwrap(), PowerState::On);
    // The permit is back once the session is over.
    assert_eq!(limit.available_permits(), 1);
}
