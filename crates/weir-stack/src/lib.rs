//! The CloudFormation template engine: parses YAML (with the `!Ref`-style short tags) or JSON
//! templates, evaluates intrinsic functions, orders resources by their dependencies, and creates,
//! updates (in place or by replacement) and deletes them as stacks through the validated
//! operations of [`weir_model::State`], with CloudFormation's events, rollback and change sets.
//!
//! Supported: `Parameters` (types, `Default`, `AllowedValues`, length and value bounds),
//! `Mappings`, `Conditions`, `Outputs` (with exports), `DependsOn`; `Ref`, `Fn::GetAtt`,
//! `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::Split`, `Fn::FindInMap`, `Fn::GetAZs`,
//! `Fn::Base64`, `Fn::If`/`Fn::Equals`/`Fn::And`/`Fn::Or`/`Fn::Not`; the resource types in
//! [`resources::SUPPORTED`].
#![forbid(unsafe_code)]

pub mod deploy;
pub mod intrinsics;
pub mod resources;
pub mod template;

pub use deploy::{
    create_stack, delete_stack, deploy, deploy_stack, deployment, is_empty_update, plan_changes,
    update_stack, validate_template, Deployment, Outcome, Request, StackError,
};
pub use template::{parse_template, Template};
