//! CloudFormation stacks as Weir records them: the template and parameters a stack was last
//! deployed from, the resources it owns (with the evaluated properties an update diffs against),
//! its outputs, its event history and its change sets. The template engine (`weir-stack`)
//! writes these records; the API and the CLI read them.

use std::collections::BTreeMap;

use serde_json::Value;

/// Most events kept per stack (the oldest are dropped first).
pub const MAX_EVENTS_PER_STACK: usize = 2000;
/// Most stacks per region (AWS's default quota).
pub const MAX_STACKS: usize = 2000;

/// A stack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stack {
    /// Stack id: `arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/UUID`.
    pub id: String,
    /// Stack name.
    pub name: String,
    /// The template text the stack was last deployed from.
    pub template: String,
    /// The template's `Description`.
    pub description: Option<String>,
    /// Parameter values the stack was last deployed with (defaults included).
    pub parameters: BTreeMap<String, String>,
    /// `CREATE_COMPLETE`, `UPDATE_ROLLBACK_COMPLETE`, `REVIEW_IN_PROGRESS`, ...
    pub status: String,
    /// Why the stack is in its status (failures).
    pub status_reason: Option<String>,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Last update time, ms since the epoch.
    pub updated_ms: Option<u64>,
    /// Capabilities acknowledged at the last create or update.
    pub capabilities: Vec<String>,
    /// Stack tags.
    pub tags: BTreeMap<String, String>,
    /// Evaluated outputs.
    pub outputs: Vec<StackOutput>,
    /// Resources in creation order.
    pub resources: Vec<StackResource>,
    /// Events, oldest first.
    pub events: Vec<StackEvent>,
    /// Change sets not yet executed or deleted.
    pub change_sets: Vec<ChangeSet>,
}

impl Stack {
    /// An empty stack record: no template, resources or events yet.
    pub fn new(id: &str, name: &str, status: &str, created_ms: u64) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            template: String::new(),
            description: None,
            parameters: BTreeMap::new(),
            status: status.into(),
            status_reason: None,
            created_ms,
            updated_ms: None,
            capabilities: Vec::new(),
            tags: BTreeMap::new(),
            outputs: Vec::new(),
            resources: Vec::new(),
            events: Vec::new(),
            change_sets: Vec::new(),
        }
    }

    /// Appends an event, dropping the oldest beyond [`MAX_EVENTS_PER_STACK`].
    pub fn push_event(&mut self, e: StackEvent) {
        self.events.push(e);
        if self.events.len() > MAX_EVENTS_PER_STACK {
            let extra = self.events.len() - MAX_EVENTS_PER_STACK;
            self.events.drain(..extra);
        }
    }

    /// A resource by logical id.
    pub fn resource(&self, logical_id: &str) -> Option<&StackResource> {
        self.resources.iter().find(|r| r.logical_id == logical_id)
    }

    /// A change set by name or id.
    pub fn change_set(&self, name_or_id: &str) -> Option<&ChangeSet> {
        self.change_sets.iter().find(|c| c.name == name_or_id || c.id == name_or_id)
    }

    /// Whether the stack exists (deleted stacks stay visible by id, as in CloudFormation).
    pub fn is_live(&self) -> bool {
        self.status != "DELETE_COMPLETE"
    }

    /// Whether the stack may be updated now (AWS refuses updates from failed creations).
    pub fn updatable(&self) -> bool {
        matches!(
            self.status.as_str(),
            "CREATE_COMPLETE"
                | "UPDATE_COMPLETE"
                | "UPDATE_ROLLBACK_COMPLETE"
                | "IMPORT_COMPLETE"
                | "IMPORT_ROLLBACK_COMPLETE"
        )
    }
}

/// One resource a stack owns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StackResource {
    /// Logical id in the template.
    pub logical_id: String,
    /// `AWS::...` type.
    pub resource_type: String,
    /// Physical id (an ARN, a name or an EC2 id, as `Ref` returns it).
    pub physical_id: String,
    /// `CREATE_COMPLETE` or `UPDATE_COMPLETE`.
    pub status: String,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
    /// Properties as evaluated at the last create or update (what the next update diffs).
    pub properties: Value,
    /// `Fn::GetAtt` attributes.
    pub attributes: BTreeMap<String, Value>,
}

/// A stack output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StackOutput {
    /// Output name.
    pub key: String,
    /// Evaluated value (lists joined with commas).
    pub value: String,
    /// `Description`.
    pub description: Option<String>,
    /// `Export.Name`.
    pub export_name: Option<String>,
}

/// A stack event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StackEvent {
    /// Event id (unique within the stack).
    pub id: String,
    /// Logical id (the stack name for stack-level events).
    pub logical_id: String,
    /// Physical id (the stack id for stack-level events; empty before creation).
    pub physical_id: String,
    /// Resource type (`AWS::CloudFormation::Stack` for stack-level events).
    pub resource_type: String,
    /// `CREATE_IN_PROGRESS`, `CREATE_COMPLETE`, `UPDATE_FAILED`, ...
    pub status: String,
    /// Why (failures, replacements, user-initiated operations).
    pub reason: Option<String>,
    /// When, ms since the epoch.
    pub timestamp_ms: u64,
}

/// One change a change set would make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResourceChange {
    /// `Add`, `Modify` or `Remove`.
    pub action: String,
    /// Logical id.
    pub logical_id: String,
    /// Physical id of the existing resource (`Modify`, `Remove`).
    pub physical_id: Option<String>,
    /// Resource type.
    pub resource_type: String,
    /// `True` or `False` for `Modify`.
    pub replacement: Option<String>,
    /// Top-level properties that change (`Modify`).
    pub properties: Vec<String>,
}

/// A change set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeSet {
    /// `arn:aws:cloudformation:REGION:ACCOUNT:changeSet/NAME/UUID`.
    pub id: String,
    /// Name.
    pub name: String,
    /// `CREATE` or `UPDATE`.
    pub change_set_type: String,
    /// Description given at creation.
    pub description: Option<String>,
    /// Template text.
    pub template: String,
    /// Parameter values (defaults and previous values resolved).
    pub parameters: BTreeMap<String, String>,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Tags to apply to the stack.
    pub tags: BTreeMap<String, String>,
    /// `CREATE_COMPLETE` or `FAILED`.
    pub status: String,
    /// Why it failed (for example, no changes).
    pub status_reason: Option<String>,
    /// `AVAILABLE`, `UNAVAILABLE`, `EXECUTE_COMPLETE`, `EXECUTE_FAILED` or `OBSOLETE`.
    pub execution_status: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// The changes.
    pub changes: Vec<ResourceChange>,
}
