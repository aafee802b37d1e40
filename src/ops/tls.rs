//! TLS for the client-facing listeners: the rustls server configuration (ring provider, TLS 1.2
//! and 1.3 only, ALPN h2 and http/1.1) built from the PEM files of `[server.tls]`, and its
//! reload. New handshakes use the newest good certificate; connections already open keep the
//! one they started with; a pair that cannot be loaded keeps the last good one (and says why).
use crate::config::Tls;
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{cert} and {key}: {message}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the server configuration from a certificate chain and a private key (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let pem_err = |path: &Path, message: String| TlsError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let cert_pem = read(cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "holds no CERTIFICATE block".into()));
    }
    let key_pem = read(key)?;
    // The key's own parse error is not shown: it could quote the file.
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        pem_err(
            key,
            "holds no usable private key (PEM: PKCS#8, PKCS#1 or SEC1)".into(),
        )
    })?;
    let config_err = |message: String| TlsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        message,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| config_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| config_err(format!("unusable certificate or key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificate in force, swapped atomically on reload.
pub struct TlsStore {
    files: Tls,
    current: ArcSwap<ServerConfig>,
}

impl TlsStore {
    /// Loads the files; the daemon does not start without a usable pair.
    pub fn load(files: &Tls) -> Result<Self, TlsError> {
        let config = server_config(&files.cert, &files.key)?;
        Ok(TlsStore {
            files: files.clone(),
            current: ArcSwap::from_pointee(config),
        })
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// The files to watch.
    pub fn files(&self) -> Vec<PathBuf> {
        vec![self.files.cert.clone(), self.files.key.clone()]
    }

    /// Re-reads the files; on error the current certificate stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files.cert, &self.files.key)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// [`reload`](Self::reload), logged (and counted in the metrics).
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => {
                super::metrics::global().tls_reloaded(true);
                tracing::info!(target: "audit", event = "tls_reloaded", "TLS certificate reloaded");
            }
            Err(e) => {
                super::metrics::global().tls_reloaded(false);
                tracing::error!(target: "audit", event = "tls_reload_failed", reason = %e, "TLS certificate NOT reloaded, keeping the last good one: {e}");
            }
        }
    }
}
