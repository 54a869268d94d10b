//! How to reach a broker: host and port from the URL, TLS settings, credentials (the
//! password read now, from its variable or file), keep-alive; as rumqttc options. Shared
//! by the MQTT adapter and the Sparkplug uplink.

use crate::config::{MqttBroker, PasswordError, broker_address};
use crate::tls::TlsError;
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;

/// Why a broker's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt `{name}`: bad broker URL `{url}`")]
    BrokerUrl { name: String, url: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("mqtt `{name}`: {error}")]
    Password { name: String, error: PasswordError },
}

/// A broker's connection settings, checked and loaded.
pub struct Connection {
    pub(super) host: String,
    pub(super) port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    credentials: Option<(String, String)>,
    keep_alive: Duration,
}

impl Connection {
    /// Reads the password from its environment variable or file and the TLS files.
    pub fn new(broker: &MqttBroker) -> Result<Self, MqttError> {
        let (host, port, tls) = broker_address(&broker.broker)
            .ok_or_else(|| MqttError::BrokerUrl { name: broker.name.clone(), url: broker.broker.clone() })?;
        let tls = if tls {
            let client = broker.client_cert.as_deref().zip(broker.client_key.as_deref());
            Some(crate::tls::client_config(broker.ca_file.as_deref(), client)?)
        } else {
            None
        };
        let credentials = match &broker.username {
            Some(user) => {
                let password = crate::config::password(broker.password_env.as_deref(), broker.password_file.as_deref())
                    .map_err(|error| MqttError::Password { name: broker.name.clone(), error })?;
                Some((user.clone(), password))
            }
            None => None,
        };
        Ok(Self { host, port, tls, credentials, keep_alive: Duration::from_secs(broker.keep_alive_s.max(5)) })
    }

    /// Options for a clean session as `client_id` (no will: the caller sets its own).
    pub fn options(&self, client_id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options.set_keep_alive(self.keep_alive);
        options.set_clean_session(true);
        options.set_max_packet_size(4 << 20, 4 << 20);
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls.clone())));
        }
        if let Some((user, password)) = &self.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        options
    }
}
