//! Stacks: creating, updating and deleting the resources of a template in a [`State`], with
//! CloudFormation's events, rollback and change sets.
//!
//! Every operation works on a copy of the state. A create or update that fails part-way rolls
//! back by discarding the copy: the live state (and so the traffic it serves) never sees a
//! half-applied template. What is recorded is the stack's history: the events of the attempt and
//! of its rollback, and the `ROLLBACK_COMPLETE` / `UPDATE_ROLLBACK_COMPLETE` status.
//!
//! An update diffs each resource's evaluated properties against what it was last deployed with,
//! in dependency order: unchanged resources are left alone, changed ones are updated in place
//! or, when a replacing property changed, created anew and the old one deleted in the cleanup
//! phase after everything else succeeded; resources gone from the template are deleted in
//! reverse creation order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{json, Value};
use weir_model::stack::{ResourceChange, Stack, StackEvent, StackOutput, StackResource};
use weir_model::{ModelError, State};

use crate::intrinsics::{references, Context};
use crate::resources::{self, Owner};
use crate::template::{parse_template, Template};
use weir_model::shape::{self as convert, get_str, get_strs};

/// Why a stack operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackError {
    /// The template or its parameters are malformed.
    Template(String),
    /// A resource type Weir does not implement.
    Unsupported {
        /// Logical id.
        logical_id: String,
        /// Type.
        resource_type: String,
    },
    /// Creating, updating or deleting a resource failed validation.
    Resource {
        /// Logical id.
        logical_id: String,
        /// Type.
        resource_type: String,
        /// The model error.
        error: ModelError,
    },
    /// The operation does not apply to the stack as it is (missing, exists, wrong status,
    /// nothing to update).
    Stack {
        /// AWS error code (`ValidationError`, `AlreadyExistsException`).
        code: &'static str,
        /// Message, in AWS's wording.
        message: String,
    },
}

impl StackError {
    fn stack(code: &'static str, message: impl Into<String>) -> Self {
        Self::Stack { code, message: message.into() }
    }

    /// `Stack with id NAME does not exist`, AWS's wording (tools match on it).
    pub fn no_stack(name: &str) -> Self {
        Self::stack("ValidationError", format!("Stack with id {name} does not exist"))
    }

    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Stack { code, .. } => code,
            _ => "ValidationError",
        }
    }
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Template(m) => f.write_str(m),
            StackError::Unsupported { logical_id, resource_type } => write!(
                f,
                "Template format error: Unrecognized resource types: [{resource_type}] (resource {logical_id}); Weir does not support it"
            ),
            StackError::Resource { logical_id, resource_type, error } => {
                write!(f, "Resource {logical_id} ({resource_type}) failed: {error}")
            }
            StackError::Stack { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for StackError {}

/// One resource of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedResource {
    /// Logical id.
    pub logical_id: String,
    /// Resource type.
    pub resource_type: String,
    /// Physical id (the ARN for ELBv2 resources).
    pub physical_id: String,
}

/// The result of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deployment {
    /// Resources in creation order.
    pub resources: Vec<DeployedResource>,
    /// Evaluated outputs.
    pub outputs: BTreeMap<String, String>,
}

impl Deployment {
    fn of(stack: &Stack) -> Self {
        Self {
            resources: stack
                .resources
                .iter()
                .map(|r| DeployedResource {
                    logical_id: r.logical_id.clone(),
                    resource_type: r.resource_type.clone(),
                    physical_id: r.physical_id.clone(),
                })
                .collect(),
            outputs: stack.outputs.iter().map(|o| (o.key.clone(), o.value.clone())).collect(),
        }
    }
}

/// A create or update request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Stack name.
    pub stack_name: String,
    /// Template text (YAML or JSON).
    pub template: String,
    /// Parameter values given (template defaults fill the rest).
    pub parameters: BTreeMap<String, String>,
    /// Capabilities acknowledged.
    pub capabilities: Vec<String>,
    /// Stack tags.
    pub tags: BTreeMap<String, String>,
    /// Now, ms since the epoch.
    pub now_ms: u64,
}

/// How a create or update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every resource is as the template says; the stack is `*_COMPLETE`.
    Complete,
    /// A resource failed; the state is as before and the stack rolled back
    /// (`ROLLBACK_COMPLETE` / `UPDATE_ROLLBACK_COMPLETE`). The error says which and why.
    RolledBack(StackError),
}

/// A template checked against its parameters, ready to converge.
struct Prepared {
    template: Template,
    ctx: Context,
    order: Vec<String>,
    parameters: BTreeMap<String, String>,
}

fn terr(m: impl Into<String>) -> StackError {
    StackError::Template(m.into())
}

/// A new stack id for `name` in `state`'s region and account, as CloudFormation forms them.
pub fn new_stack_id(state: &State, name: &str) -> String {
    format!(
        "arn:aws:cloudformation:{}:{}:stack/{name}/{}",
        state.region,
        state.account,
        weir_model::ids::uuid()
    )
}

/// Stack names: 1-128 characters, a letter first, then letters, digits and hyphens.
fn check_stack_name(name: &str) -> Result<(), StackError> {
    let ok = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(StackError::stack(
            "ValidationError",
            format!("1 validation error detected: Value '{name}' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*"),
        ))
    }
}

/// Parses and checks a template: supported types, parameters, conditions, dependencies.
fn prepare(
    text: &str,
    state: &State,
    stack_name: &str,
    stack_id: &str,
    given: &BTreeMap<String, String>,
) -> Result<Prepared, StackError> {
    let template = parse_template(text)?;
    let mut ctx = Context {
        region: state.region.clone(),
        mappings: template.section("Mappings").clone(),
        ..Default::default()
    };
    ctx.refs.insert("AWS::Region".into(), json!(state.region));
    ctx.refs.insert("AWS::AccountId".into(), json!(state.account));
    ctx.refs.insert("AWS::StackName".into(), json!(stack_name));
    ctx.refs.insert("AWS::Partition".into(), json!("aws"));
    ctx.refs.insert("AWS::URLSuffix".into(), json!("amazonaws.com"));
    ctx.refs.insert("AWS::StackId".into(), json!(stack_id));
    ctx.refs.insert("AWS::NotificationARNs".into(), json!([]));
    let parameters = resolve_parameters(&template, given, &mut ctx)?;
    resolve_conditions(&template, &mut ctx)?;
    let resources = template.section("Resources");
    let mut unsupported = Vec::new();
    for (id, r) in resources {
        let ty = get_str(r, "Type")
            .ok_or_else(|| terr(format!("Template format error: resource {id} has no Type")))?;
        if !resources::SUPPORTED.contains(&ty.as_str()) {
            unsupported.push((id.clone(), ty));
        }
    }
    if let Some((logical_id, resource_type)) = unsupported.into_iter().next() {
        return Err(StackError::Unsupported { logical_id, resource_type });
    }
    let order = creation_order(resources, &ctx)?;
    Ok(Prepared { template, ctx, order, parameters })
}

/// Checks a template on its own (`ValidateTemplate`): it parses, every resource type is
/// supported, references resolve and there are no cycles. Parameters without defaults are fine.
pub fn validate_template(text: &str, state: &State) -> Result<Template, StackError> {
    let template = parse_template(text)?;
    let mut given = BTreeMap::new();
    for (name, p) in template.section("Parameters") {
        if get_str(p, "Default").is_none() {
            // A placeholder that satisfies the declared type, to check the rest.
            let ty = get_str(p, "Type").unwrap_or_default();
            let v = if ty == "Number" {
                get_str(p, "MinValue").unwrap_or_else(|| "1".into())
            } else {
                get_strs(p, "AllowedValues").into_iter().next().unwrap_or_else(|| {
                    "x".repeat(convert::get_u32(p, "MinLength").ok().flatten().unwrap_or(1).max(1)
                        as usize)
                })
            };
            given.insert(name.clone(), v);
        }
    }
    prepare(text, state, "validate", "validate", &given)?;
    Ok(template)
}

/// Events being recorded for one operation.
struct Events<'a> {
    stack_name: &'a str,
    stack_id: &'a str,
    now_ms: u64,
    next: usize,
    list: Vec<StackEvent>,
}

impl<'a> Events<'a> {
    fn new(stack_name: &'a str, stack_id: &'a str, now_ms: u64) -> Self {
        Self { stack_name, stack_id, now_ms, next: 0, list: Vec::new() }
    }

    fn resource(
        &mut self,
        id: &str,
        physical: &str,
        ty: &str,
        status: &str,
        reason: Option<String>,
    ) {
        self.next += 1;
        self.list.push(StackEvent {
            id: format!("{id}-{status}-{}-{}", self.now_ms, self.next),
            logical_id: id.into(),
            physical_id: physical.into(),
            resource_type: ty.into(),
            status: status.into(),
            reason,
            timestamp_ms: self.now_ms,
        });
    }

    fn stack(&mut self, status: &str, reason: Option<String>) {
        let (name, id) = (self.stack_name, self.stack_id);
        self.next += 1;
        self.list.push(StackEvent {
            id: format!("{}-{status}-{}", weir_model::ids::uuid(), self.next),
            logical_id: name.into(),
            physical_id: id.into(),
            resource_type: "AWS::CloudFormation::Stack".into(),
            status: status.into(),
            reason,
            timestamp_ms: self.now_ms,
        });
    }
}

/// What a converge touched, for the rollback's events.
#[derive(Default)]
struct Touched {
    /// Newly created resources (also replacements): `(logical, physical, type)`.
    created: Vec<(String, String, String)>,
    /// Resources updated in place.
    updated: Vec<(String, String, String)>,
}

/// A converge that failed: the error, and what it had touched.
struct Failed {
    error: StackError,
    touched: Touched,
}

/// The result of a successful converge.
struct Converged {
    resources: Vec<StackResource>,
    outputs: Vec<StackOutput>,
    changes: Vec<ResourceChange>,
}

/// Brings `next` from the resources `old` to what the prepared template says, recording events.
/// `update` selects the update events (and the cleanup phase's stack event).
fn converge(
    next: &mut State,
    old: &[StackResource],
    p: &mut Prepared,
    ev: &mut Events<'_>,
    update: bool,
) -> Result<Converged, Box<Failed>> {
    let mut touched = Touched::default();
    let mut out: Vec<StackResource> = Vec::new();
    let mut changes = Vec::new();
    let mut replaced: Vec<StackResource> = Vec::new();
    let resources = p.template.section("Resources").clone();
    let now = ev.now_ms;
    for id in p.order.clone() {
        let r = &resources[&id];
        if let Some(c) = get_str(r, "Condition") {
            match p.ctx.conditions.get(&c) {
                Some(true) => {}
                Some(false) => continue,
                None => {
                    return Err(Box::new(Failed {
                        error: terr(format!("Template error: unknown condition {c}")),
                        touched,
                    }))
                }
            }
        }
        let ty = get_str(r, "Type").unwrap_or_default();
        let fail = |error: ModelError| StackError::Resource {
            logical_id: id.clone(),
            resource_type: ty.clone(),
            error,
        };
        let props = match p.ctx.eval(r.get("Properties").unwrap_or(&json!({}))) {
            Ok(v) => v,
            Err(error) => {
                let status = if update { "UPDATE_FAILED" } else { "CREATE_FAILED" };
                ev.resource(&id, "", &ty, status, Some(error.to_string()));
                return Err(Box::new(Failed { error, touched }));
            }
        };
        let previous = old.iter().find(|o| o.logical_id == id);
        let owner =
            Owner { stack: ev.stack_name, stack_id: ev.stack_id, logical_id: &id, now_ms: now };
        let (physical, attrs, status) = match previous {
            Some(o) if o.resource_type == ty && o.properties == props => {
                (o.physical_id.clone(), o.attributes.clone(), o.status.clone())
            }
            Some(o)
                if o.resource_type == ty
                    && !resources::needs_replacement(&ty, &o.properties, &props) =>
            {
                ev.resource(&id, &o.physical_id, &ty, "UPDATE_IN_PROGRESS", None);
                match resources::update(
                    next,
                    &ty,
                    &o.physical_id,
                    (&o.properties, &o.attributes),
                    &props,
                    now,
                ) {
                    Ok(attrs) => {
                        ev.resource(&id, &o.physical_id, &ty, "UPDATE_COMPLETE", None);
                        touched.updated.push((id.clone(), o.physical_id.clone(), ty.clone()));
                        changes.push(change(
                            &id,
                            &ty,
                            Some(&o.physical_id),
                            Some("False"),
                            resources::changed_properties(&o.properties, &props),
                        ));
                        (o.physical_id.clone(), attrs, "UPDATE_COMPLETE".to_string())
                    }
                    Err(e) => {
                        ev.resource(&id, &o.physical_id, &ty, "UPDATE_FAILED", Some(e.to_string()));
                        return Err(Box::new(Failed { error: fail(e), touched }));
                    }
                }
            }
            Some(o) => {
                // Replacement: a custom name cannot be held by two resources at once.
                let kept_name = resources::name_property(&ty).and_then(|k| {
                    let (a, b) = (get_str(&o.properties, k), get_str(&props, k));
                    (a.is_some() && a == b).then_some(a).flatten()
                });
                if let Some(name) = kept_name.filter(|_| o.resource_type == ty) {
                    let msg = format!("CloudFormation cannot update a stack when a custom-named resource requires replacing. Rename {name} and update the stack again.");
                    ev.resource(&id, &o.physical_id, &ty, "UPDATE_FAILED", Some(msg.clone()));
                    return Err(Box::new(Failed {
                        error: fail(ModelError::validation(msg)),
                        touched,
                    }));
                }
                ev.resource(&id, &o.physical_id, &ty, "UPDATE_IN_PROGRESS", Some("Requested update requires the creation of a new physical resource; hence creating one.".into()));
                match resources::create(next, &ty, owner, &props) {
                    Ok((physical, attrs)) => {
                        ev.resource(&id, &physical, &ty, "UPDATE_COMPLETE", None);
                        touched.created.push((id.clone(), physical.clone(), ty.clone()));
                        changes.push(change(
                            &id,
                            &ty,
                            Some(&o.physical_id),
                            Some("True"),
                            resources::changed_properties(&o.properties, &props),
                        ));
                        replaced.push(o.clone());
                        (physical, attrs, "UPDATE_COMPLETE".to_string())
                    }
                    Err(e) => {
                        ev.resource(&id, &o.physical_id, &ty, "UPDATE_FAILED", Some(e.to_string()));
                        return Err(Box::new(Failed { error: fail(e), touched }));
                    }
                }
            }
            None => {
                ev.resource(&id, "", &ty, "CREATE_IN_PROGRESS", None);
                match resources::create(next, &ty, owner, &props) {
                    Ok((physical, attrs)) => {
                        ev.resource(
                            &id,
                            &physical,
                            &ty,
                            "CREATE_IN_PROGRESS",
                            Some("Resource creation Initiated".into()),
                        );
                        ev.resource(&id, &physical, &ty, "CREATE_COMPLETE", None);
                        touched.created.push((id.clone(), physical.clone(), ty.clone()));
                        changes.push(change(&id, &ty, None, None, Vec::new()));
                        (physical, attrs, "CREATE_COMPLETE".to_string())
                    }
                    Err(e) => {
                        ev.resource(&id, "", &ty, "CREATE_FAILED", Some(e.to_string()));
                        return Err(Box::new(Failed { error: fail(e), touched }));
                    }
                }
            }
        };
        p.ctx.refs.insert(id.clone(), json!(physical));
        p.ctx.attrs.insert(id.clone(), attrs.clone());
        let updated_ms =
            if previous.is_some_and(|o| o.physical_id == physical && o.properties == props) {
                previous.map_or(now, |o| o.updated_ms)
            } else {
                now
            };
        out.push(StackResource {
            logical_id: id.clone(),
            resource_type: ty,
            physical_id: physical,
            status,
            updated_ms,
            properties: props,
            attributes: attrs,
        });
    }
    let outputs = match outputs(&p.template, &p.ctx) {
        Ok(o) => o,
        Err(error) => return Err(Box::new(Failed { error, touched })),
    };
    // Cleanup: replaced resources and resources gone from the template, newest first.
    let gone: Vec<&StackResource> = old
        .iter()
        .rev()
        .filter(|o| {
            replaced.iter().any(|r| r.logical_id == o.logical_id)
                || !out.iter().any(|n| n.logical_id == o.logical_id)
        })
        .collect();
    if update && !gone.is_empty() {
        ev.stack("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None);
    }
    for o in gone {
        ev.resource(&o.logical_id, &o.physical_id, &o.resource_type, "DELETE_IN_PROGRESS", None);
        if let Err(e) = resources::delete(next, &o.resource_type, &o.physical_id, &o.properties) {
            ev.resource(
                &o.logical_id,
                &o.physical_id,
                &o.resource_type,
                "DELETE_FAILED",
                Some(e.to_string()),
            );
            let error = StackError::Resource {
                logical_id: o.logical_id.clone(),
                resource_type: o.resource_type.clone(),
                error: e,
            };
            return Err(Box::new(Failed { error, touched }));
        }
        ev.resource(&o.logical_id, &o.physical_id, &o.resource_type, "DELETE_COMPLETE", None);
        if !replaced.iter().any(|r| r.logical_id == o.logical_id) {
            changes.push(change(
                &o.logical_id,
                &o.resource_type,
                Some(&o.physical_id),
                None,
                Vec::new(),
            ));
        }
    }
    Ok(Converged { resources: out, outputs, changes })
}

/// One planned change. The action follows from the rest: no existing resource is `Add`, a
/// replacement verdict is `Modify`, an existing resource without one is `Remove`.
fn change(
    id: &str,
    ty: &str,
    existing: Option<&str>,
    replacement: Option<&str>,
    properties: Vec<String>,
) -> ResourceChange {
    let action = match (existing, replacement) {
        (None, _) => "Add",
        (Some(_), Some(_)) => "Modify",
        (Some(_), None) => "Remove",
    };
    ResourceChange {
        action: action.into(),
        logical_id: id.into(),
        physical_id: existing.map(str::to_string),
        resource_type: ty.into(),
        replacement: replacement.map(str::to_string),
        properties,
    }
}

fn outputs(t: &Template, ctx: &Context) -> Result<Vec<StackOutput>, StackError> {
    let mut out = Vec::new();
    for (name, o) in t.section("Outputs") {
        if let Some(c) = get_str(o, "Condition") {
            if !ctx.conditions.get(&c).copied().unwrap_or(false) {
                continue;
            }
        }
        let v =
            ctx.eval(o.get("Value").ok_or_else(|| {
                terr(format!("Template format error: output {name} has no Value"))
            })?)?;
        let value = match v {
            Value::Array(a) => a.iter().filter_map(convert::str_of).collect::<Vec<_>>().join(","),
            other => convert::str_of(&other).unwrap_or_else(|| other.to_string()),
        };
        let export_name = match o.pointer("/Export/Name") {
            Some(n) => Some(ctx.eval(n).map(|v| convert::str_of(&v).unwrap_or_default())?),
            None => None,
        };
        out.push(StackOutput {
            key: name.clone(),
            value,
            description: get_str(o, "Description"),
            export_name,
        });
    }
    Ok(out)
}

/// Rollback events: what the failed attempt touched is put back (in reverse).
fn rollback_events(ev: &mut Events<'_>, touched: &Touched, update: bool) {
    for (id, physical, ty) in touched.updated.iter().rev() {
        ev.resource(id, physical, ty, "UPDATE_IN_PROGRESS", None);
        ev.resource(id, physical, ty, "UPDATE_COMPLETE", None);
    }
    if update && !touched.created.is_empty() {
        ev.stack("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", None);
    }
    for (id, physical, ty) in touched.created.iter().rev() {
        ev.resource(id, physical, ty, "DELETE_IN_PROGRESS", None);
        ev.resource(id, physical, ty, "DELETE_COMPLETE", None);
    }
}

fn failed_logical_id(e: &StackError) -> Option<&str> {
    match e {
        StackError::Resource { logical_id, .. } | StackError::Unsupported { logical_id, .. } => {
            Some(logical_id)
        }
        _ => None,
    }
}

/// Creates stack `req.stack_name`. Template and parameter errors are returned (nothing is
/// recorded); a resource failure rolls back, leaving the stack in `ROLLBACK_COMPLETE` with its
/// events, and is reported as [`Outcome::RolledBack`]. Returns the stack id.
pub fn create_stack(state: &mut State, req: &Request) -> Result<(String, Outcome), StackError> {
    check_stack_name(&req.stack_name)?;
    let existing = state.stacks.get(&req.stack_name).filter(|s| s.is_live());
    if existing.is_some_and(|s| s.status != "REVIEW_IN_PROGRESS") {
        return Err(StackError::stack(
            "AlreadyExistsException",
            format!("Stack [{}] already exists", req.stack_name),
        ));
    }
    if existing.is_none() && state.stacks.len() >= weir_model::stack::MAX_STACKS {
        return Err(StackError::stack(
            "LimitExceededException",
            "The stack limit has been reached",
        ));
    }
    let stack_id = existing.map_or_else(|| new_stack_id(state, &req.stack_name), |s| s.id.clone());
    let mut p = prepare(&req.template, state, &req.stack_name, &stack_id, &req.parameters)?;
    let mut stack =
        existing.cloned().unwrap_or_else(|| Stack::new(&stack_id, &req.stack_name, "", req.now_ms));
    stack.template = req.template.clone();
    stack.description = get_str(&p.template.body, "Description");
    stack.parameters = p.parameters.clone();
    stack.capabilities = req.capabilities.clone();
    stack.tags = req.tags.clone();
    let mut next = state.clone();
    let mut ev = Events::new(&req.stack_name, &stack_id, req.now_ms);
    ev.stack("CREATE_IN_PROGRESS", Some("User Initiated".into()));
    let outcome = match converge(&mut next, &[], &mut p, &mut ev, false) {
        Ok(c) => {
            ev.stack("CREATE_COMPLETE", None);
            stack.status = "CREATE_COMPLETE".into();
            stack.status_reason = None;
            stack.resources = c.resources;
            stack.outputs = c.outputs;
            Outcome::Complete
        }
        Err(f) => {
            let reason = match failed_logical_id(&f.error) {
                Some(id) => format!("The following resource(s) failed to create: [{id}]. Rollback requested by user."),
                None => f.error.to_string(),
            };
            ev.stack("ROLLBACK_IN_PROGRESS", Some(reason.clone()));
            rollback_events(&mut ev, &f.touched, false);
            ev.stack("ROLLBACK_COMPLETE", None);
            next = state.clone();
            stack.status = "ROLLBACK_COMPLETE".into();
            stack.status_reason = Some(reason);
            stack.resources = Vec::new();
            stack.outputs = Vec::new();
            Outcome::RolledBack(f.error)
        }
    };
    for e in ev.list {
        stack.push_event(e);
    }
    next.stacks.insert(req.stack_name.clone(), stack);
    *state = next;
    Ok((stack_id, outcome))
}

/// Updates stack `req.stack_name` to `req.template`. Errors: no such stack, a status that cannot
/// be updated, template or parameter errors, and `No updates are to be performed.` A resource
/// failure rolls back: the state stays as it was, the stack goes to `UPDATE_ROLLBACK_COMPLETE`.
pub fn update_stack(state: &mut State, req: &Request) -> Result<Outcome, StackError> {
    let stack = state
        .stacks
        .get(&req.stack_name)
        .filter(|s| s.is_live() && s.status != "REVIEW_IN_PROGRESS")
        .ok_or_else(|| StackError::no_stack(&req.stack_name))?
        .clone();
    if !stack.updatable() {
        return Err(StackError::stack(
            "ValidationError",
            format!("Stack:{} is in {} state and can not be updated.", stack.id, stack.status),
        ));
    }
    let mut p = prepare(&req.template, state, &stack.name, &stack.id, &req.parameters)?;
    // Dry run: nothing to do is an error, as in CloudFormation.
    let changes = plan(state, &stack, &p)?;
    if changes.is_empty()
        && stack.parameters == p.parameters
        && stack.tags == req.tags
        && outputs(&p.template, &context_after(&stack, &p)).ok().as_ref() == Some(&stack.outputs)
    {
        return Err(StackError::stack("ValidationError", "No updates are to be performed."));
    }
    let mut next = state.clone();
    let mut ev = Events::new(&stack.name, &stack.id, req.now_ms);
    ev.stack("UPDATE_IN_PROGRESS", Some("User Initiated".into()));
    let mut record = stack.clone();
    let outcome = match converge(&mut next, &stack.resources, &mut p, &mut ev, true) {
        Ok(c) => {
            ev.stack("UPDATE_COMPLETE", None);
            record.template = req.template.clone();
            record.description = get_str(&p.template.body, "Description");
            record.parameters = p.parameters.clone();
            record.capabilities = req.capabilities.clone();
            record.tags = req.tags.clone();
            record.status = "UPDATE_COMPLETE".into();
            record.status_reason = None;
            record.resources = c.resources;
            record.outputs = c.outputs;
            Outcome::Complete
        }
        Err(f) => {
            let reason = match failed_logical_id(&f.error) {
                Some(id) => format!("The following resource(s) failed to update: [{id}]."),
                None => f.error.to_string(),
            };
            ev.stack("UPDATE_ROLLBACK_IN_PROGRESS", Some(reason.clone()));
            rollback_events(&mut ev, &f.touched, true);
            ev.stack("UPDATE_ROLLBACK_COMPLETE", None);
            next = state.clone();
            record.status = "UPDATE_ROLLBACK_COMPLETE".into();
            record.status_reason = Some(reason);
            Outcome::RolledBack(f.error)
        }
    };
    record.updated_ms = Some(req.now_ms);
    for e in ev.list {
        record.push_event(e);
    }
    next.stacks.insert(stack.name.clone(), record);
    *state = next;
    Ok(outcome)
}

/// The context an unchanged update would evaluate outputs in: the stack's current resources.
fn context_after(stack: &Stack, p: &Prepared) -> Context {
    let mut ctx = p.ctx.clone();
    for r in &stack.resources {
        ctx.refs.insert(r.logical_id.clone(), json!(r.physical_id));
        ctx.attrs.insert(r.logical_id.clone(), r.attributes.clone());
    }
    ctx
}

/// The changes converging `stack` to the prepared template would make, from a dry run on a copy.
/// A dry run that fails part-way lists the changes up to the failing resource (which is listed
/// as it would be attempted); executing it then fails and rolls back.
fn plan(state: &State, stack: &Stack, p: &Prepared) -> Result<Vec<ResourceChange>, StackError> {
    let mut scratch = state.clone();
    let mut ev = Events::new(&stack.name, &stack.id, 0);
    let mut p = Prepared {
        template: p.template.clone(),
        ctx: p.ctx.clone(),
        order: p.order.clone(),
        parameters: p.parameters.clone(),
    };
    match converge(&mut scratch, &stack.resources, &mut p, &mut ev, true) {
        Ok(c) => Ok(c.changes),
        Err(f) => {
            let mut changes: Vec<ResourceChange> = Vec::new();
            for (id, physical, ty) in &f.touched.updated {
                changes.push(change(id, ty, Some(physical), Some("False"), Vec::new()));
            }
            for (id, _, ty) in &f.touched.created {
                let old = stack.resource(id).map(|r| r.physical_id.as_str());
                changes.push(change(id, ty, old, old.map(|_| "True"), Vec::new()));
            }
            if let StackError::Resource { logical_id, resource_type, .. } = &f.error {
                let old = stack.resource(logical_id);
                let old = old.map(|r| r.physical_id.as_str());
                changes.push(change(
                    logical_id,
                    resource_type,
                    old,
                    old.map(|_| "Conditional"),
                    Vec::new(),
                ));
            } else {
                return Err(f.error);
            }
            Ok(changes)
        }
    }
}

/// The changes a change set would make: for a new stack (`CREATE`) every resource is added; for
/// an existing one, a dry-run update. Template and parameter errors are returned.
pub fn plan_changes(
    state: &State,
    stack: &Stack,
    req: &Request,
) -> Result<(Vec<ResourceChange>, BTreeMap<String, String>), StackError> {
    let p = prepare(&req.template, state, &stack.name, &stack.id, &req.parameters)?;
    let changes = plan(state, stack, &p)?;
    Ok((changes, p.parameters))
}

/// Whether a planned update would change nothing at all (resources, parameters, outputs).
pub fn is_empty_update(state: &State, stack: &Stack, req: &Request) -> Result<bool, StackError> {
    let p = prepare(&req.template, state, &stack.name, &stack.id, &req.parameters)?;
    let changes = plan(state, stack, &p)?;
    Ok(changes.is_empty()
        && stack.parameters == p.parameters
        && outputs(&p.template, &context_after(stack, &p)).ok().as_ref() == Some(&stack.outputs))
}

/// Deletes stack `name`: its resources in reverse creation order, then the stack. A resource
/// that cannot be deleted leaves the stack in `DELETE_FAILED` with the resources not yet
/// deleted (the deleted ones stay deleted, as in CloudFormation). A stack that does not
/// exist is not an error. Returns whether the stack is gone.
pub fn delete_stack(state: &mut State, name: &str, now_ms: u64) -> Result<bool, StackError> {
    let Some(stack) = state.stacks.get(name).filter(|s| s.is_live()).cloned() else {
        return Ok(true);
    };
    let mut next = state.clone();
    let (stack_name, stack_id) = (stack.name.clone(), stack.id.clone());
    let mut ev = Events::new(&stack_name, &stack_id, now_ms);
    ev.stack("DELETE_IN_PROGRESS", Some("User Initiated".into()));
    let mut remaining = stack.resources.clone();
    let mut failure = None;
    while let Some(r) = remaining.last().cloned() {
        ev.resource(&r.logical_id, &r.physical_id, &r.resource_type, "DELETE_IN_PROGRESS", None);
        match resources::delete(&mut next, &r.resource_type, &r.physical_id, &r.properties) {
            Ok(()) => {
                ev.resource(
                    &r.logical_id,
                    &r.physical_id,
                    &r.resource_type,
                    "DELETE_COMPLETE",
                    None,
                );
                remaining.pop();
            }
            Err(e) => {
                ev.resource(
                    &r.logical_id,
                    &r.physical_id,
                    &r.resource_type,
                    "DELETE_FAILED",
                    Some(e.to_string()),
                );
                failure = Some(format!(
                    "The following resource(s) failed to delete: [{}]. ",
                    r.logical_id
                ));
                break;
            }
        }
    }
    let mut record = stack;
    let gone = failure.is_none();
    match failure {
        None => {
            ev.stack("DELETE_COMPLETE", None);
            record.status = "DELETE_COMPLETE".into();
            record.status_reason = None;
            record.outputs = Vec::new();
            record.change_sets = Vec::new();
        }
        Some(reason) => {
            ev.stack("DELETE_FAILED", Some(reason.clone()));
            record.status = "DELETE_FAILED".into();
            record.status_reason = Some(reason);
        }
    }
    record.resources = remaining;
    for e in ev.list {
        record.push_event(e);
    }
    next.stacks.insert(name.to_string(), record);
    *state = next;
    Ok(gone)
}

/// Creates the stack, or updates it when it exists (`weir up`, `weir stack deploy`). An update
/// with nothing to change is [`Outcome::Complete`].
pub fn deploy_stack(state: &mut State, req: &Request) -> Result<Outcome, StackError> {
    match state.stacks.get(&req.stack_name).filter(|s| s.is_live()) {
        Some(s) if s.status == "ROLLBACK_COMPLETE" => {
            // A failed creation holds nothing: start again, as `aws cloudformation deploy` users
            // do by deleting it first.
            delete_stack(state, &req.stack_name, req.now_ms)?;
            create_stack(state, req).map(|(_, o)| o)
        }
        Some(s) if s.status != "REVIEW_IN_PROGRESS" => match update_stack(state, req) {
            Err(StackError::Stack { message, .. })
                if message == "No updates are to be performed." =>
            {
                Ok(Outcome::Complete)
            }
            other => other,
        },
        _ => create_stack(state, req).map(|(_, o)| o),
    }
}

/// Deploys `template` as a new stack `stack_name` into `state`, failing (with the state as it
/// was) if any resource fails. The stack is recorded in `state.stacks`.
pub fn deploy(
    template: &Template,
    stack_name: &str,
    params: &BTreeMap<String, String>,
    state: &mut State,
    now_ms: u64,
) -> Result<Deployment, StackError> {
    let req = Request {
        stack_name: stack_name.into(),
        template: serde_json::to_string(&template.body)
            .map_err(|e| terr(format!("Template format error: {e}")))?,
        parameters: params.clone(),
        now_ms,
        ..Default::default()
    };
    let mut next = state.clone();
    match create_stack(&mut next, &req)? {
        (_, Outcome::Complete) => {
            let d = next.stacks.get(stack_name).map(Deployment::of).unwrap_or_default();
            *state = next;
            Ok(d)
        }
        (_, Outcome::RolledBack(e)) => Err(e),
    }
}

/// The deployment a stack in `state` holds.
pub fn deployment(state: &State, stack_name: &str) -> Option<Deployment> {
    state.stacks.get(stack_name).map(Deployment::of)
}

fn resolve_parameters(
    t: &Template,
    given: &BTreeMap<String, String>,
    ctx: &mut Context,
) -> Result<BTreeMap<String, String>, StackError> {
    let declared = t.section("Parameters");
    let mut values = BTreeMap::new();
    let unknown: Vec<&String> = given.keys().filter(|k| !declared.contains_key(*k)).collect();
    if !unknown.is_empty() {
        return Err(terr(format!("Parameters: {unknown:?} do not exist in the template")));
    }
    let mut missing = Vec::new();
    for (name, p) in declared {
        let value = given.get(name).cloned().or_else(|| get_str(p, "Default"));
        let Some(value) = value else {
            missing.push(name.clone());
            continue;
        };
        let allowed = get_strs(p, "AllowedValues");
        if !allowed.is_empty() && !allowed.contains(&value) {
            return Err(terr(format!("Parameter '{name}' must be one of AllowedValues")));
        }
        let ty = get_str(p, "Type").unwrap_or_else(|| "String".into());
        let len = value.chars().count() as f64;
        let bound = |k: &str| get_str(p, k).and_then(|v| v.parse::<f64>().ok());
        if bound("MinLength").is_some_and(|m| len < m)
            || bound("MaxLength").is_some_and(|m| len > m)
        {
            let why = get_str(p, "ConstraintDescription")
                .unwrap_or_else(|| "its length is out of range".into());
            return Err(terr(format!("Parameter '{name}' failed to satisfy constraint: {why}")));
        }
        let v = if ty == "Number" {
            let n = value
                .parse::<f64>()
                .map_err(|_| terr(format!("Parameter '{name}' must be a number")))?;
            if bound("MinValue").is_some_and(|m| n < m) || bound("MaxValue").is_some_and(|m| n > m)
            {
                let why = get_str(p, "ConstraintDescription")
                    .unwrap_or_else(|| "its value is out of range".into());
                return Err(terr(format!(
                    "Parameter '{name}' failed to satisfy constraint: {why}"
                )));
            }
            json!(value)
        } else if ty == "CommaDelimitedList" || ty.starts_with("List<") {
            Value::Array(value.split(',').map(|s| json!(s.trim())).collect())
        } else {
            json!(value)
        };
        ctx.refs.insert(name.clone(), v);
        values.insert(name.clone(), value);
    }
    if !missing.is_empty() {
        return Err(terr(format!("Parameters: {missing:?} must have values")));
    }
    Ok(values)
}

fn resolve_conditions(t: &Template, ctx: &mut Context) -> Result<(), StackError> {
    let conds = t.section("Conditions");
    // Conditions may refer to each other; resolve in passes until no progress.
    let mut pending: Vec<&String> = conds.keys().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut still = Vec::new();
        for name in pending {
            match ctx.condition(&conds[name]) {
                Ok(b) => {
                    ctx.conditions.insert(name.clone(), b);
                }
                Err(_) => still.push(name),
            }
        }
        if still.len() == before {
            let name = still[0];
            return ctx.condition(&conds[name]).map(|_| ());
        }
        pending = still;
    }
    Ok(())
}

fn creation_order(
    resources: &serde_json::Map<String, Value>,
    ctx: &Context,
) -> Result<Vec<String>, StackError> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (id, r) in resources {
        let mut refs = BTreeSet::new();
        references(r.get("Properties").unwrap_or(&Value::Null), &mut refs);
        match r.get("DependsOn") {
            Some(Value::String(s)) => {
                refs.insert(s.clone());
            }
            Some(Value::Array(a)) => refs.extend(a.iter().filter_map(convert::str_of)),
            _ => {}
        }
        let mut d = BTreeSet::new();
        for name in refs {
            if resources.contains_key(&name) {
                d.insert(name);
            } else if !ctx.refs.contains_key(&name) && name != "AWS::NoValue" {
                return Err(terr(format!("Template format error: Unresolved resource dependencies [{name}] in the Resources block of the template")));
            }
        }
        deps.insert(id.clone(), d);
    }
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    while order.len() < deps.len() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(id, d)| !done.contains(*id) && d.iter().all(|x| done.contains(x)))
            .map(|(id, _)| id.clone())
            .collect();
        if ready.is_empty() {
            let cyc: Vec<&String> = deps.keys().filter(|id| !done.contains(*id)).collect();
            return Err(terr(format!("Circular dependency between resources: {cyc:?}")));
        }
        for id in ready {
            done.insert(id.clone());
            order.push(id);
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests;
