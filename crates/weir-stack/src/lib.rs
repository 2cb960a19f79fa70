//! The CloudFormation template engine: parses YAML (with the `!Ref`-style short tags) or JSON
//! templates, evaluates intrinsic functions, orders resources by their dependencies and creates
//! them through the validated operations of [`weir_model::State`].
//!
//! Supported now: `Parameters` (with `Default`), `Mappings`, `Conditions`, `Outputs`,
//! `DependsOn`; `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::Split`,
//! `Fn::FindInMap`, `Fn::GetAZs`, `Fn::Base64`, `Fn::If`/`Fn::Equals`/`Fn::And`/`Fn::Or`/`Fn::Not`;
//! the resource types `AWS::ElasticLoadBalancingV2::{LoadBalancer,TargetGroup,Listener,ListenerRule}`.
#![forbid(unsafe_code)]

pub mod deploy;
pub mod intrinsics;
pub mod template;

pub use deploy::{deploy, Deployment, StackError};
pub use template::{parse_template, Template};
