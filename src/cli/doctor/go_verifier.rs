//! A rustls verifier that decides the way Go's crypto/x509 does (`go_x509`), for a connection
//! doctor sends a password over to a server other than the registry: the token server of a
//! Bearer registry. Docker, containerd and podman ask it for tokens with Go's rules, so doctor
//! sends the password where they would (a seed's self-signed CA:TRUE certificate installed as
//! its own CA, which webpki refuses) and refuses, with their error, where they would refuse.

use super::clients::Root;
use super::go_x509;
use crate::tls::client::RecordingVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Go's text when no root in the pool anchors the chain.
pub const UNKNOWN_AUTHORITY: &str = "x509: certificate signed by unknown authority";

#[derive(Debug)]
pub struct GoRulesVerifier {
    roots: Vec<Root>,
    /// The name checked: an IP address or DNS name, without port.
    host: String,
    /// Takes the chain presented and checks handshake signatures, as for the registry.
    recorder: Arc<RecordingVerifier>,
    refusal: Mutex<Option<String>>,
}

/// Go's refusal, as the error the handshake fails with.
#[derive(Debug)]
struct GoRefusal(String);

impl std::fmt::Display for GoRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GoRefusal {}

impl GoRulesVerifier {
    pub fn new(roots: Vec<Root>, host: &str) -> Arc<GoRulesVerifier> {
        Arc::new(GoRulesVerifier {
            roots,
            host: host.to_string(),
            recorder: RecordingVerifier::new(),
            refusal: Mutex::new(None),
        })
    }

    /// Go's error for the last handshake's certificate, when it refused it.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Go's verdict at `now`: `None` when it accepts the chain, else its error (dates, name,
    /// usages first, as Go reports them, then the unknown authority).
    fn judge(&self, chain: &[CertificateDer<'static>], now: OffsetDateTime) -> Option<String> {
        let verdict = go_x509::verify_names(chain, &self.roots, &self.host, now, go_x509::Names::Go);
        match (verdict.refusal, verdict.anchor) {
            (Some(refusal), _) => Some(refusal),
            (None, None) => Some(UNKNOWN_AUTHORITY.to_string()),
            (None, Some(_)) => None,
        }
    }
}

impl ServerCertVerifier for GoRulesVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.recorder
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        let now = i64::try_from(now.as_secs())
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or_else(OffsetDateTime::now_utc);
        let refusal = self.judge(&self.recorder.chain(), now);
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = refusal.clone();
        match refusal {
            None => Ok(ServerCertVerified::assertion()),
            Some(why) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                GoRefusal(why),
            ))))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.recorder.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.recorder.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.recorder.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed_ca(names: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().der().clone()
    }

    fn root(der: &CertificateDer<'static>) -> Root {
        Root {
            source: "/etc/docker/certs.d/auth.lan:5001/ca.crt".into(),
            der: der.clone(),
        }
    }

    #[test]
    fn judges_as_go_a_self_signed_ca_certificate_that_is_its_own_root() {
        let cert = self_signed_ca(&["auth.lan"]);
        let now = OffsetDateTime::now_utc();
        let trusted = GoRulesVerifier::new(vec![root(&cert)], "auth.lan");
        assert_eq!(
            trusted.judge(std::slice::from_ref(&cert), now),
            None,
            "Go accepts it; webpki would not"
        );
        let other_name = GoRulesVerifier::new(vec![root(&cert)], "other.lan");
        assert!(other_name
            .judge(std::slice::from_ref(&cert), now)
            .is_some_and(|e| e.contains("not other.lan")));
        let untrusted = GoRulesVerifier::new(vec![], "auth.lan");
        assert_eq!(untrusted.judge(&[cert], now).as_deref(), Some(UNKNOWN_AUTHORITY));
    }
}
