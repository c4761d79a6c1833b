//! Azure access: credentials, the ARM client, the rate limiter, error classification.

pub mod arm;
pub mod auth;
pub mod error;
pub mod limiter;
pub mod resource_id;

pub use arm::{Arm, ArmRequest, Poll, Reply};
pub use error::{AzureError, Class};
pub use resource_id::ResourceId;
