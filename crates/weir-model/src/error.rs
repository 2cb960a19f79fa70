//! Validation and reference errors with AWS error codes, HTTP statuses and wording.

use std::fmt;

/// AWS ELB error codes that the model can raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[allow(missing_docs)]
pub enum ErrorCode {
    ValidationError,
    DuplicateLoadBalancerName,
    DuplicateTargetGroupName,
    DuplicateListener,
    PriorityInUse,
    LoadBalancerNotFound,
    TargetGroupNotFound,
    ListenerNotFound,
    RuleNotFound,
    InvalidTarget,
    InvalidConfigurationRequest,
    IncompatibleProtocols,
    InvalidLoadBalancerAction,
    UnsupportedProtocol,
    SubnetNotFound,
    InvalidSubnet,
    ResourceInUse,
    OperationNotPermitted,
    TooManyTargets,
    TooManyRules,
    TooManyActions,
    TooManyListeners,
    TooManyLoadBalancers,
    TooManyTargetGroups,
    TargetGroupAssociationLimit,
    TooManyTags,
    TooManyCertificates,
    DuplicateTagKeys,
    SSLPolicyNotFound,
    ALPNPolicyNotFound,
    ResourceNotFound,
    MissingParameter,
    LimitExceeded,
    CertificateNotFound,
    InvalidParameterValue,
    InvalidVpcIdNotFound,
    InvalidSubnetIdNotFound,
    InvalidSubnetRange,
    InvalidSubnetConflict,
    InvalidGroupDuplicate,
    InvalidGroupNotFound,
    DependencyViolation,
    InvalidLaunchTemplateNameAlreadyExists,
    InvalidLaunchTemplateIdNotFound,
    AlreadyExists,
}

impl ErrorCode {
    /// The code as AWS spells it in `ErrorResponse/Error/Code`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ValidationError => "ValidationError",
            DuplicateLoadBalancerName => "DuplicateLoadBalancerName",
            DuplicateTargetGroupName => "DuplicateTargetGroupName",
            DuplicateListener => "DuplicateListener",
            PriorityInUse => "PriorityInUse",
            LoadBalancerNotFound => "LoadBalancerNotFound",
            TargetGroupNotFound => "TargetGroupNotFound",
            ListenerNotFound => "ListenerNotFound",
            RuleNotFound => "RuleNotFound",
            InvalidTarget => "InvalidTarget",
            InvalidConfigurationRequest => "InvalidConfigurationRequest",
            IncompatibleProtocols => "IncompatibleProtocols",
            InvalidLoadBalancerAction => "InvalidLoadBalancerAction",
            UnsupportedProtocol => "UnsupportedProtocol",
            SubnetNotFound => "SubnetNotFound",
            InvalidSubnet => "InvalidSubnet",
            ResourceInUse => "ResourceInUse",
            OperationNotPermitted => "OperationNotPermitted",
            TooManyTargets => "TooManyTargets",
            TooManyRules => "TooManyRules",
            TooManyActions => "TooManyActions",
            TooManyListeners => "TooManyListeners",
            TooManyLoadBalancers => "TooManyLoadBalancers",
            TooManyTargetGroups => "TooManyTargetGroups",
            TargetGroupAssociationLimit => "TargetGroupAssociationLimit",
            TooManyTags => "TooManyTags",
            TooManyCertificates => "TooManyCertificates",
            DuplicateTagKeys => "DuplicateTagKeys",
            SSLPolicyNotFound => "SSLPolicyNotFound",
            ALPNPolicyNotFound => "ALPNPolicyNotFound",
            ResourceNotFound => "ResourceNotFound",
            MissingParameter => "MissingParameter",
            LimitExceeded => "LimitExceeded",
            CertificateNotFound => "CertificateNotFound",
            InvalidParameterValue => "InvalidParameterValue",
            InvalidVpcIdNotFound => "InvalidVpcID.NotFound",
            InvalidSubnetIdNotFound => "InvalidSubnetID.NotFound",
            InvalidSubnetRange => "InvalidSubnet.Range",
            InvalidSubnetConflict => "InvalidSubnet.Conflict",
            InvalidGroupDuplicate => "InvalidGroup.Duplicate",
            InvalidGroupNotFound => "InvalidGroup.NotFound",
            DependencyViolation => "DependencyViolation",
            InvalidLaunchTemplateNameAlreadyExists => {
                "InvalidLaunchTemplateName.AlreadyExistsException"
            }
            InvalidLaunchTemplateIdNotFound => "InvalidLaunchTemplateId.NotFound",
            AlreadyExists => "AlreadyExists",
        }
    }

    /// The HTTP status AWS answers this error with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            LoadBalancerNotFound | TargetGroupNotFound | ListenerNotFound | RuleNotFound
            | SubnetNotFound => 400,
            _ => 400,
        }
    }
}

/// A model error: an AWS error code and a message in AWS's wording. Always the caller's fault
/// (the client side), never the load balancer's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelError {
    /// The AWS error code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

impl ModelError {
    /// Builds an error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A `ValidationError`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ModelError {}

/// Shorthand result type.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
