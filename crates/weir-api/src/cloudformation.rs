//! CloudFormation (2010-05-15): stacks, change sets, events, resources and templates, so that
//! `aws cloudformation deploy|create-stack|update-stack|delete-stack|describe-*` work against
//! Weir. The template engine is `weir-stack`; operations complete before the call returns, so
//! waiters see the final status on their first poll.

use std::collections::BTreeMap;

use serde_json::Value;
use weir_model::shape::{get_bool, get_str, get_strs, key_values};
use weir_model::stack::{ChangeSet, Stack, StackEvent};
use weir_stack::{Outcome, Request, StackError};

use crate::xml::{iso8601, Xml};
use crate::{Api, ApiError};

/// The CloudFormation XML namespace.
pub const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";

type Result<T> = std::result::Result<T, ApiError>;

fn err(code: &str, message: impl Into<String>) -> ApiError {
    ApiError { status: 400, kind: "Sender", code: code.into(), message: message.into() }
}

impl From<StackError> for ApiError {
    fn from(e: StackError) -> Self {
        err(e.code(), e.to_string())
    }
}

fn required(p: &Value, key: &str) -> Result<String> {
    get_str(p, key).ok_or_else(|| ApiError::missing(key))
}

/// The live stack named (or with the id) `name_or_id`; deleted stacks are found by id only.
fn find<'a>(state: &'a weir_model::State, name_or_id: &str) -> Option<&'a Stack> {
    state.stacks.values().find(|s| (s.name == name_or_id && s.is_live()) || s.id == name_or_id)
}

fn stack_or_err<'a>(state: &'a weir_model::State, name_or_id: &str) -> Result<&'a Stack> {
    find(state, name_or_id).ok_or_else(|| StackError::no_stack(name_or_id).into())
}

/// The template text of a request: `TemplateBody`, or the stack's with `UsePreviousTemplate`.
fn template_of(p: &Value, previous: Option<&Stack>) -> Result<String> {
    if let Some(t) = get_str(p, "TemplateBody") {
        return Ok(t);
    }
    if get_bool(p, "UsePreviousTemplate").map_err(ApiError::from)?.unwrap_or(false) {
        return previous
            .map(|s| s.template.clone())
            .ok_or_else(|| err("ValidationError", "UsePreviousTemplate needs an existing stack"));
    }
    if get_str(p, "TemplateURL").is_some() {
        return Err(err(
            "ValidationError",
            "TemplateURL is not supported by Weir: pass the template as TemplateBody",
        ));
    }
    Err(err("ValidationError", "Either Template URL or Template Body must be specified."))
}

/// `Parameters.member.N.{ParameterKey,ParameterValue,UsePreviousValue}`.
fn parameters_of(p: &Value, previous: Option<&Stack>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for m in p.get("Parameters").and_then(Value::as_array).into_iter().flatten() {
        let key = required(m, "ParameterKey")?;
        if get_bool(m, "UsePreviousValue").map_err(ApiError::from)?.unwrap_or(false) {
            match previous.and_then(|s| s.parameters.get(&key)) {
                Some(v) => {
                    out.insert(key, v.clone());
                }
                None => {
                    return Err(err(
                        "ValidationError",
                        format!("Invalid input for parameter key {key}. Cannot specify usePreviousValue as true for a parameter key not in the previous template"),
                    ))
                }
            }
        } else {
            out.insert(key, get_str(m, "ParameterValue").unwrap_or_default());
        }
    }
    Ok(out)
}

fn request(p: &Value, name: &str, previous: Option<&Stack>) -> Result<Request> {
    Ok(Request {
        stack_name: name.to_string(),
        template: template_of(p, previous)?,
        parameters: parameters_of(p, previous)?,
        capabilities: get_strs(p, "Capabilities"),
        tags: key_values(p.get("Tags")).into_iter().collect(),
        now_ms: crate::now_ms(),
    })
}

pub(crate) async fn dispatch(api: &Api, action: &str, p: &Value) -> Result<String> {
    let mut x = Xml::default();
    match action {
        "CreateStack" => {
            let name = required(p, "StackName")?;
            let req = request(p, &name, None)?;
            let id = api
                .mutate("CreateStack", &name, |s| Ok(weir_stack::create_stack(s, &req)))
                .await??
                .0;
            x.leaf("StackId", id);
        }
        "UpdateStack" => {
            let name = required(p, "StackName")?;
            let state = api.store.lock().await.state().clone();
            let stack = stack_or_err(&state, &name)?;
            let req = request(p, &stack.name, Some(stack))?;
            let id = stack.id.clone();
            api.mutate("UpdateStack", &name, |s| Ok(weir_stack::update_stack(s, &req))).await??;
            x.leaf("StackId", id);
        }
        "DeleteStack" => {
            let name = required(p, "StackName")?;
            let state = api.store.lock().await.state().clone();
            if let Some(stack) = find(&state, &name).filter(|s| s.is_live()) {
                let n = stack.name.clone();
                let now = crate::now_ms();
                api.mutate("DeleteStack", &n, |s| Ok(weir_stack::delete_stack(s, &n, now)))
                    .await??;
            }
        }
        "DescribeStacks" => {
            let state = api.store.lock().await.state().clone();
            let stacks: Vec<&Stack> = match get_str(p, "StackName") {
                Some(n) => vec![stack_or_err(&state, &n)?],
                None => state.stacks.values().filter(|s| s.is_live()).collect(),
            };
            x.list("Stacks", stacks, stack_xml);
        }
        "ListStacks" => {
            let state = api.store.lock().await.state().clone();
            let filter = get_strs(p, "StackStatusFilter");
            let stacks =
                state.stacks.values().filter(|s| filter.is_empty() || filter.contains(&s.status));
            x.list("StackSummaries", stacks, |x, s| {
                x.leaf("StackId", &s.id)
                    .leaf("StackName", &s.name)
                    .opt("TemplateDescription", s.description.as_ref())
                    .leaf("CreationTime", iso8601(s.created_ms))
                    .opt("LastUpdatedTime", s.updated_ms.map(iso8601))
                    .leaf("StackStatus", &s.status)
                    .opt("StackStatusReason", s.status_reason.as_ref());
            });
        }
        "DescribeStackEvents" => {
            let state = api.store.lock().await.state().clone();
            let s = stack_or_err(&state, &required(p, "StackName")?)?;
            x.list("StackEvents", s.events.iter().rev(), |x, e| event_xml(x, s, e));
        }
        "DescribeStackResources" => {
            let state = api.store.lock().await.state().clone();
            let (name, physical) = (get_str(p, "StackName"), get_str(p, "PhysicalResourceId"));
            let s = match (&name, &physical) {
                (Some(n), _) => stack_or_err(&state, n)?,
                (None, Some(ph)) => state
                    .stacks
                    .values()
                    .find(|s| s.is_live() && s.resources.iter().any(|r| &r.physical_id == ph))
                    .ok_or_else(|| {
                        err("ValidationError", format!("Stack for {ph} does not exist"))
                    })?,
                (None, None) => {
                    return Err(err(
                        "ValidationError",
                        "Either StackName or PhysicalResourceId must be specified.",
                    ))
                }
            };
            let logical = get_str(p, "LogicalResourceId");
            let items = s.resources.iter().filter(|r| {
                logical.as_ref().is_none_or(|l| &r.logical_id == l)
                    && physical.as_ref().is_none_or(|ph| &r.physical_id == ph)
            });
            x.list("StackResources", items, |x, r| {
                x.leaf("StackName", &s.name)
                    .leaf("StackId", &s.id)
                    .leaf("LogicalResourceId", &r.logical_id)
                    .leaf("PhysicalResourceId", &r.physical_id)
                    .leaf("ResourceType", &r.resource_type)
                    .leaf("Timestamp", iso8601(r.updated_ms))
                    .leaf("ResourceStatus", &r.status)
                    .open("DriftInformation")
                    .leaf("StackResourceDriftStatus", "NOT_CHECKED")
                    .close("DriftInformation");
            });
        }
        "DescribeStackResource" => {
            let state = api.store.lock().await.state().clone();
            let s = stack_or_err(&state, &required(p, "StackName")?)?;
            let l = required(p, "LogicalResourceId")?;
            let r = s.resource(&l).ok_or_else(|| {
                err("ValidationError", format!("Resource {l} does not exist for stack {}", s.name))
            })?;
            x.open("StackResourceDetail")
                .leaf("StackName", &s.name)
                .leaf("StackId", &s.id)
                .leaf("LogicalResourceId", &r.logical_id)
                .leaf("PhysicalResourceId", &r.physical_id)
                .leaf("ResourceType", &r.resource_type)
                .leaf("LastUpdatedTimestamp", iso8601(r.updated_ms))
                .leaf("ResourceStatus", &r.status)
                .leaf("Metadata", "{}")
                .open("DriftInformation")
                .leaf("StackResourceDriftStatus", "NOT_CHECKED")
                .close("DriftInformation")
                .close("StackResourceDetail");
        }
        "ListStackResources" => {
            let state = api.store.lock().await.state().clone();
            let s = stack_or_err(&state, &required(p, "StackName")?)?;
            x.list("StackResourceSummaries", &s.resources, |x, r| {
                x.leaf("LogicalResourceId", &r.logical_id)
                    .leaf("PhysicalResourceId", &r.physical_id)
                    .leaf("ResourceType", &r.resource_type)
                    .leaf("LastUpdatedTimestamp", iso8601(r.updated_ms))
                    .leaf("ResourceStatus", &r.status)
                    .open("DriftInformation")
                    .leaf("StackResourceDriftStatus", "NOT_CHECKED")
                    .close("DriftInformation");
            });
        }
        "ValidateTemplate" => {
            let state = api.store.lock().await.state().clone();
            let t = weir_stack::validate_template(&template_of(p, None)?, &state)?;
            parameters_xml(&mut x, &t.body);
            x.opt("Description", get_str(&t.body, "Description"));
            x.strings("Capabilities", Vec::<String>::new());
        }
        "GetTemplateSummary" => {
            let state = api.store.lock().await.state().clone();
            let text = match get_str(p, "StackName") {
                Some(n) => stack_or_err(&state, &n)?.template.clone(),
                None => template_of(p, None)?,
            };
            let t = weir_stack::validate_template(&text, &state)?;
            parameters_xml(&mut x, &t.body);
            x.opt("Description", get_str(&t.body, "Description"));
            let mut types: Vec<String> =
                t.section("Resources").values().filter_map(|r| get_str(r, "Type")).collect();
            types.sort();
            types.dedup();
            x.strings("ResourceTypes", types);
            x.leaf("Version", "2010-09-09");
            x.strings("Capabilities", Vec::<String>::new());
            x.strings("DeclaredTransforms", Vec::<String>::new());
        }
        "GetTemplate" => {
            let state = api.store.lock().await.state().clone();
            let s = stack_or_err(&state, &required(p, "StackName")?)?;
            let body = match get_str(p, "ChangeSetName") {
                Some(c) => change_set(s, &c)?.template.clone(),
                None => s.template.clone(),
            };
            x.leaf("TemplateBody", body);
            x.strings("StagesAvailable", ["Original", "Processed"]);
        }
        "CreateChangeSet" => return create_change_set(api, p).await,
        "DescribeChangeSet" => {
            let state = api.store.lock().await.state().clone();
            let (s, c) = locate_change_set(&state, p)?;
            change_set_xml(&mut x, s, c);
        }
        "ListChangeSets" => {
            let state = api.store.lock().await.state().clone();
            let s = stack_or_err(&state, &required(p, "StackName")?)?;
            x.list("Summaries", &s.change_sets, |x, c| {
                x.leaf("StackId", &s.id)
                    .leaf("StackName", &s.name)
                    .leaf("ChangeSetId", &c.id)
                    .leaf("ChangeSetName", &c.name)
                    .leaf("ExecutionStatus", &c.execution_status)
                    .leaf("Status", &c.status)
                    .opt("StatusReason", c.status_reason.as_ref())
                    .leaf("CreationTime", iso8601(c.created_ms))
                    .opt("Description", c.description.as_ref());
            });
        }
        "DeleteChangeSet" => {
            let state = api.store.lock().await.state().clone();
            let (s, c) = locate_change_set(&state, p)?;
            let (stack, id) = (s.name.clone(), c.id.clone());
            let review = s.status == "REVIEW_IN_PROGRESS" && s.change_sets.len() == 1;
            api.mutate("DeleteChangeSet", &id, |st| {
                if review {
                    // A stack that only ever held this change set goes with it.
                    st.stacks.remove(&stack);
                } else if let Some(s) = st.stacks.get_mut(&stack) {
                    s.change_sets.retain(|c| c.id != id);
                }
                Ok(())
            })
            .await?;
        }
        "ExecuteChangeSet" => {
            let state = api.store.lock().await.state().clone();
            let (s, c) = locate_change_set(&state, p)?;
            if c.execution_status != "AVAILABLE" {
                return Err(err(
                    "InvalidChangeSetStatus",
                    format!(
                        "ChangeSet [{}] cannot be executed in its current execution status of [{}]",
                        c.id, c.execution_status
                    ),
                ));
            }
            let req = Request {
                stack_name: s.name.clone(),
                template: c.template.clone(),
                parameters: c.parameters.clone(),
                capabilities: c.capabilities.clone(),
                tags: c.tags.clone(),
                now_ms: crate::now_ms(),
            };
            let create = c.change_set_type == "CREATE";
            api.mutate("ExecuteChangeSet", &c.id, |st| {
                Ok(if create {
                    weir_stack::create_stack(st, &req).map(|(_, o)| o)
                } else {
                    match weir_stack::update_stack(st, &req) {
                        Err(StackError::Stack { message, .. })
                            if message == "No updates are to be performed." =>
                        {
                            Ok(Outcome::Complete)
                        }
                        other => other,
                    }
                }
                .map(|_| {
                    // Executing a change set makes the stack's other change sets obsolete.
                    if let Some(s) = st.stacks.get_mut(&req.stack_name) {
                        s.change_sets.clear();
                    }
                }))
            })
            .await??;
        }
        _ => {
            return Err(ApiError {
                status: 400,
                kind: "Sender",
                code: "InvalidAction".into(),
                message: format!("Could not find operation {action} for version 2010-05-15"),
            })
        }
    }
    Ok(x.0)
}

fn change_set<'a>(s: &'a Stack, name: &str) -> Result<&'a ChangeSet> {
    s.change_set(name).ok_or_else(|| ApiError {
        status: 404,
        kind: "Sender",
        code: "ChangeSetNotFound".into(),
        message: format!("ChangeSet [{name}] does not exist"),
    })
}

/// The change set `ChangeSetName` (a name with `StackName`, or an id alone).
fn locate_change_set<'a>(
    state: &'a weir_model::State,
    p: &Value,
) -> Result<(&'a Stack, &'a ChangeSet)> {
    let name = required(p, "ChangeSetName")?;
    if let Some(stack) = get_str(p, "StackName") {
        let s = stack_or_err(state, &stack)?;
        return Ok((s, change_set(s, &name)?));
    }
    state
        .stacks
        .values()
        .find_map(|s| s.change_sets.iter().find(|c| c.id == name).map(|c| (s, c)))
        .ok_or_else(|| ApiError {
            status: 404,
            kind: "Sender",
            code: "ChangeSetNotFound".into(),
            message: format!("ChangeSet [{name}] does not exist"),
        })
}

async fn create_change_set(api: &Api, p: &Value) -> Result<String> {
    let name = required(p, "StackName")?;
    let cs_name = required(p, "ChangeSetName")?;
    let kind = get_str(p, "ChangeSetType").unwrap_or_else(|| "UPDATE".into());
    let state = api.store.lock().await.state().clone();
    let existing = state.stacks.get(&name).filter(|s| s.is_live());
    let stack = match kind.as_str() {
        "CREATE" => {
            if existing.is_some_and(|s| s.status != "REVIEW_IN_PROGRESS") {
                return Err(err(
                    "AlreadyExistsException",
                    format!("Stack [{name}] already exists and cannot be created again with the changeSet [{cs_name}]."),
                ));
            }
            existing.cloned().unwrap_or_else(|| {
                let id = weir_stack::deploy::new_stack_id(&state, &name);
                let mut s = Stack::new(&id, &name, "REVIEW_IN_PROGRESS", crate::now_ms());
                s.status_reason = Some("User Initiated".into());
                s
            })
        }
        "UPDATE" => existing
            .filter(|s| s.status != "REVIEW_IN_PROGRESS")
            .cloned()
            .ok_or_else(|| StackError::no_stack(&name))?,
        other => {
            return Err(err(
                "ValidationError",
                format!("ChangeSetType '{other}' is not supported: use CREATE or UPDATE"),
            ))
        }
    };
    if kind == "UPDATE" && !stack.updatable() {
        return Err(err(
            "ValidationError",
            format!("Stack:{} is in {} state and can not be updated.", stack.id, stack.status),
        ));
    }
    if stack.change_set(&cs_name).is_some() {
        return Err(err("AlreadyExistsException", format!("ChangeSet {cs_name} already exists")));
    }
    let req = request(p, &name, Some(&stack))?;
    let (changes, parameters) = weir_stack::plan_changes(&state, &stack, &req)?;
    let empty = kind == "UPDATE" && weir_stack::is_empty_update(&state, &stack, &req)?;
    let id = format!(
        "arn:aws:cloudformation:{}:{}:changeSet/{cs_name}/{}",
        state.region,
        state.account,
        weir_model::ids::uuid()
    );
    let cs = ChangeSet {
        id: id.clone(),
        name: cs_name,
        change_set_type: kind,
        description: get_str(p, "Description"),
        template: req.template.clone(),
        parameters,
        capabilities: req.capabilities.clone(),
        tags: req.tags.clone(),
        status: if empty { "FAILED" } else { "CREATE_COMPLETE" }.into(),
        status_reason: empty.then(|| "The submitted information didn't contain changes. Submit different information to create a change set.".to_string()),
        execution_status: if empty { "UNAVAILABLE" } else { "AVAILABLE" }.into(),
        created_ms: req.now_ms,
        changes,
    };
    let stack_id = stack.id.clone();
    api.mutate("CreateChangeSet", &id, move |st| {
        let mut s = st.stacks.get(&name).filter(|s| s.is_live()).cloned().unwrap_or(stack);
        s.change_sets.push(cs);
        st.stacks.insert(name, s);
        Ok(())
    })
    .await?;
    let mut x = Xml::default();
    x.leaf("Id", id).leaf("StackId", stack_id);
    Ok(x.0)
}

fn parameters_xml(x: &mut Xml, body: &Value) {
    let empty = serde_json::Map::new();
    let params = body.get("Parameters").and_then(Value::as_object).unwrap_or(&empty);
    x.list("Parameters", params, |x, (k, v)| {
        x.leaf("ParameterKey", k)
            .opt("DefaultValue", get_str(v, "Default"))
            .opt("ParameterType", get_str(v, "Type"))
            .leaf("NoEcho", get_str(v, "NoEcho").is_some_and(|n| n == "true"))
            .opt("Description", get_str(v, "Description"));
        let allowed = get_strs(v, "AllowedValues");
        if !allowed.is_empty() {
            x.open("ParameterConstraints")
                .strings("AllowedValues", allowed)
                .close("ParameterConstraints");
        }
    });
}

fn stack_xml(x: &mut Xml, s: &Stack) {
    x.leaf("StackId", &s.id).leaf("StackName", &s.name);
    x.opt("Description", s.description.as_ref());
    x.list("Parameters", &s.parameters, |x, (k, v)| {
        x.leaf("ParameterKey", k).leaf("ParameterValue", v);
    });
    x.leaf("CreationTime", iso8601(s.created_ms))
        .opt("LastUpdatedTime", s.updated_ms.map(iso8601))
        .leaf("StackStatus", &s.status)
        .opt("StackStatusReason", s.status_reason.as_ref())
        .leaf("DisableRollback", false)
        .strings("NotificationARNs", Vec::<String>::new())
        .strings("Capabilities", &s.capabilities);
    x.list("Outputs", &s.outputs, |x, o| {
        x.leaf("OutputKey", &o.key)
            .leaf("OutputValue", &o.value)
            .opt("Description", o.description.as_ref())
            .opt("ExportName", o.export_name.as_ref());
    });
    x.list("Tags", &s.tags, |x, (k, v)| {
        x.leaf("Key", k).leaf("Value", v);
    });
    x.leaf("EnableTerminationProtection", false)
        .open("DriftInformation")
        .leaf("StackDriftStatus", "NOT_CHECKED")
        .close("DriftInformation");
}

fn event_xml(x: &mut Xml, s: &Stack, e: &StackEvent) {
    x.leaf("StackId", &s.id)
        .leaf("EventId", &e.id)
        .leaf("StackName", &s.name)
        .leaf("LogicalResourceId", &e.logical_id)
        .leaf("PhysicalResourceId", &e.physical_id)
        .leaf("ResourceType", &e.resource_type)
        .leaf("Timestamp", iso8601(e.timestamp_ms))
        .leaf("ResourceStatus", &e.status)
        .opt("ResourceStatusReason", e.reason.as_ref());
}

fn change_set_xml(x: &mut Xml, s: &Stack, c: &ChangeSet) {
    x.leaf("ChangeSetName", &c.name)
        .leaf("ChangeSetId", &c.id)
        .leaf("StackId", &s.id)
        .leaf("StackName", &s.name)
        .opt("Description", c.description.as_ref());
    x.list("Parameters", &c.parameters, |x, (k, v)| {
        x.leaf("ParameterKey", k).leaf("ParameterValue", v);
    });
    x.leaf("CreationTime", iso8601(c.created_ms))
        .leaf("ExecutionStatus", &c.execution_status)
        .leaf("Status", &c.status)
        .opt("StatusReason", c.status_reason.as_ref())
        .strings("NotificationARNs", Vec::<String>::new())
        .strings("Capabilities", &c.capabilities);
    x.list("Tags", &c.tags, |x, (k, v)| {
        x.leaf("Key", k).leaf("Value", v);
    });
    x.list("Changes", &c.changes, |x, ch| {
        x.leaf("Type", "Resource")
            .open("ResourceChange")
            .leaf("Action", &ch.action)
            .leaf("LogicalResourceId", &ch.logical_id)
            .opt("PhysicalResourceId", ch.physical_id.as_ref())
            .leaf("ResourceType", &ch.resource_type)
            .opt("Replacement", ch.replacement.as_ref())
            .strings(
                "Scope",
                if ch.properties.is_empty() { Vec::new() } else { vec!["Properties"] },
            );
        x.list("Details", &ch.properties, |x, name| {
            x.open("Target")
                .leaf("Attribute", "Properties")
                .leaf("Name", name)
                .close("Target")
                .leaf("Evaluation", "Static")
                .leaf("ChangeSource", "DirectModification");
        });
        x.close("ResourceChange");
    });
    x.leaf("IncludeNestedStacks", false);
}
