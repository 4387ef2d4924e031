//! The CPU cost of one RMCP+ session on the console side: the RAKP computations, key
//! derivation, and one encrypted, integrity-protected request and its response.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use maas_power::ipmi::crypto::{Rakp, SessionKeys, key_bytes};
use maas_power::ipmi::wire;
use maas_power::params::CipherSuite;

fn session_crypto(c: &mut Criterion) {
    let kuid = key_bytes("password");
    for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
        let rakp = Rakp {
            suite,
            kuid: &kuid,
            kg: &[0; 20],
            console_id: 0xa0a2_a3a4,
            bmc_id: 0x0584,
            rm: [1; 16],
            rc: [2; 16],
            guid: [3; 16],
            role: 0x13,
            user: b"admin",
        };
        let msg = wire::emit_request(0x00, 0x01, 1, &[]);
        c.bench_function(
            &format!("ipmi suite {} handshake and one request", suite.id()),
            |b| {
                b.iter(|| {
                    let r = black_box(&rakp);
                    let code2 = r.rakp2_auth_code();
                    let code3 = r.rakp3_auth_code();
                    let sik = r.sik();
                    let icv = r.rakp4_icv(&sik);
                    let keys = SessionKeys::derive(suite, &sik);
                    let sealed = keys.encrypt([9; 16], &msg);
                    let mac = keys.integrity(&sealed);
                    let open = keys.decrypt(&sealed);
                    (code2, code3, icv, mac, open)
                })
            },
        );
    }
}

criterion_group!(benches, session_crypto);
criterion_main!(benches);
