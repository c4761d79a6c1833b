//! Azure access: credentials, the ARM client, the rate limiter, error classification.

pub mod arm;
pub mod auth;
pub mod error;
pub mod limiter;
pub mod resource_id;

pub use arm::{Arm, ArmRequest, Operation, OperationVia, Poll, Reply};
pub use error::{AzureError, Class};
pub use resource_id::ResourceId;

/// Which API a request goes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Service {
    #[default]
    Arm,
    /// Defender for Endpoint (`/api/...`, not versioned).
    Mde,
    /// Microsoft Graph.
    Graph,
}

/// One client per API, each with its own token audience and rate limits.
pub struct Clients {
    pub arm: std::sync::Arc<Arm>,
    pub mde: std::sync::Arc<Arm>,
    pub graph: std::sync::Arc<Arm>,
    /// For the few reads a control makes in Kubernetes (e.g. a Secret with file content).
    pub kube: kube::Client,
}

impl Clients {
    pub fn get(&self, s: Service) -> &Arm {
        match s {
            Service::Arm => &self.arm,
            Service::Mde => &self.mde,
            Service::Graph => &self.graph,
        }
    }
}

/// `$filter=<field> eq '<value>'`, URL-encoded (quotes in the value doubled, as OData wants):
/// the one filter shape Graph and Defender for Endpoint lists get from this operator.
pub fn odata_eq_filter(field: &str, value: &str) -> String {
    let clause = format!("{field} eq '{}'", value.replace('\'', "''"));
    let encoded: String = clause
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("$filter={encoded}")
}
