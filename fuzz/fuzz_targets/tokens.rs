//! Bearer tokens as `TokenVerifier::verify` sees them, and `rootcertbundle` files. Random
//! bytes rarely get past the signature, so the first byte picks a mode: a raw token, a token
//! whose header and claims are the fuzz input but properly signed by a trusted key (so the
//! claims decoder and checks are reached), or a certificate bundle.
#![no_main]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::sync::OnceLock;
use wharf::auth::token::TokenVerifier;

const ISSUER: &str = "fuzz-issuer";
const SERVICE: &str = "fuzz-service";
const NOW: i64 = 1_700_000_000;

struct Signer {
    key: EcdsaKeyPair,
    cert_b64: String,
    verifier: TokenVerifier,
}

fn signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("key");
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
        let kp = rcgen::KeyPair::try_from(&der).expect("rcgen key");
        let cert = rcgen::CertificateParams::new(vec!["token-signer".into()])
            .expect("params")
            .self_signed(&kp)
            .expect("certificate");
        let mut verifier = TokenVerifier::new(ISSUER, SERVICE);
        verifier.trust_bundle(cert.pem().as_bytes()).expect("bundle");
        let _ = key.public_key();
        Signer {
            key,
            cert_b64: STANDARD.encode(cert.der()),
            verifier,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let s = signer();
    match mode % 3 {
        0 => {
            let _ = s.verifier.verify(&String::from_utf8_lossy(rest), NOW);
        }
        1 => {
            // Claims from the input, signed for real; the header names the trusted certificate.
            let header = format!(r#"{{"alg":"ES256","typ":"JWT","x5c":["{}"]}}"#, s.cert_b64);
            let signed = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(rest));
            let rng = SystemRandom::new();
            let sig = s.key.sign(&rng, signed.as_bytes()).expect("sign");
            let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            if let Ok(claims) = s.verifier.verify(&token, NOW) {
                assert_eq!(claims.issuer, ISSUER);
                let _ = claims.allows("a/b", wharf::auth::Action::Pull);
                let _ = claims.allows_catalog();
            }
        }
        _ => {
            let mut v = TokenVerifier::new(ISSUER, SERVICE);
            let _ = v.trust_bundle(rest);
        }
    }
});
