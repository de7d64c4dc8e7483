//! TLS for the API client: rustls with the `ring` provider, the platform's trust store plus
//! the operator's `--ca-bundle`, and HTTP/2 or HTTP/1.1 by ALPN.
//!
//! Guarantees: certificates are always verified (there is no way to turn it off); a
//! certificate in `--ca-bundle` is trusted as a root *and* as the server's own certificate
//! when the server presents exactly it (a self-signed certificate made with `openssl req
//! -x509` is marked as a CA, which WebPKI refuses as a server's own), with its name still
//! checked against the host; the bundle is read as a bounded regular file.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};

use super::error::SetupError;

/// Largest CA bundle read.
const MAX_BUNDLE: u64 = 4 << 20;

/// The client's TLS configuration, with the certificates of `bundle` trusted besides the
/// platform's.
pub(crate) fn config(bundle: Option<&Path>) -> Result<rustls::ClientConfig, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra = match bundle {
        Some(p) => load(p)?,
        None => Vec::new(),
    };
    let platform =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra.clone(), provider.clone())
            .map_err(|e| SetupError::Tls(e.to_string()))?;
    let verifier = Verifier {
        inner: platform,
        pinned: extra,
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A reqwest client builder with this TLS and no proxy, for plain calls outside the API
/// client (the simulator's statistics, tests).
pub fn plain_client() -> Result<reqwest::ClientBuilder, SetupError> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(config(None)?))
}

/// The certificates of a PEM bundle.
fn load(p: &Path) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let pem = crate::files::read_regular(p, "--ca-bundle", MAX_BUNDLE)?;
    let refuse = |reason: String| SetupError::Bundle {
        path: p.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| refuse(format!("is not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(refuse(
            "holds no certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The platform's verification, and the bundle's certificates accepted as they are.
#[derive(Debug)]
struct Verifier {
    inner: rustls_platform_verifier::Verifier,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(e) => {
                if !self
                    .pinned
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref())
                {
                    return Err(e);
                }
                // The operator trusts this very certificate: its name must still be the host's.
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&cert, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
