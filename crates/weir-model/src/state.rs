//! The desired state: every resource, with the validated operations that change it.
//!
//! Each operation either applies completely or returns a [`ModelError`] and leaves the state as it
//! was. Operations take explicit times (no clock inside) so that they are deterministic.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::action::{validate_actions, Action};
use crate::condition::{validate_rule_conditions, Condition};
use crate::error::{ErrorCode, ModelError, Result};
use crate::ids;
use crate::listener::{
    alpn_protocols, Listener, ListenerTls, Rule, RulePriority, MAX_CERTIFICATES_PER_LISTENER,
};
use crate::load_balancer::{LoadBalancer, LoadBalancerType, Scheme};
use crate::target_group::{Protocol, Target, TargetGroup, TargetType};
use crate::zones;

/// Most rules (excluding default rules) per Application Load Balancer.
pub const MAX_RULES_PER_ALB: usize = 100;
/// Most listeners per load balancer.
pub const MAX_LISTENERS_PER_LB: usize = 50;
/// Most targets per target group.
pub const MAX_TARGETS_PER_TG: usize = 1000;
/// Most load balancers (bounded by the node-address space).
pub const MAX_LOAD_BALANCERS: usize = 254;

/// A registration request: target id, optional port and zone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetSpec {
    /// Instance id or IP address.
    pub id: String,
    /// Port; the target group's port when absent.
    pub port: Option<u16>,
    /// Availability zone; derived from the address when absent.
    pub availability_zone: Option<String>,
}

/// A compute instance that `instance` targets can name (launched by Auto Scaling).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    /// `i-...` id.
    pub id: String,
    /// Private address.
    pub address: IpAddr,
    /// Zone name.
    pub availability_zone: String,
}

/// The whole desired state of one Weir region/account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Region name.
    pub region: String,
    /// Account id.
    pub account: String,
    /// Load balancers by ARN.
    pub load_balancers: BTreeMap<String, LoadBalancer>,
    /// Target groups by ARN.
    pub target_groups: BTreeMap<String, TargetGroup>,
    /// Listeners by ARN.
    pub listeners: BTreeMap<String, Listener>,
    /// Rules by ARN.
    pub rules: BTreeMap<String, Rule>,
    /// Instances by id.
    pub instances: BTreeMap<String, Instance>,
    /// Tags by resource ARN, in key order.
    #[serde(default)]
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    /// EC2 resources created through the API.
    #[serde(default)]
    pub ec2: crate::ec2::Ec2,
    /// CloudWatch metric alarms by name.
    #[serde(default)]
    pub alarms: BTreeMap<String, crate::alarm::MetricAlarm>,
    /// Auto Scaling groups and their activities.
    #[serde(default)]
    pub auto_scaling: crate::autoscaling::AutoScaling,
    /// CloudFormation stacks by name.
    #[serde(default)]
    pub stacks: BTreeMap<String, crate::stack::Stack>,
}

impl Default for State {
    fn default() -> Self {
        Self::new(ids::DEFAULT_REGION, ids::DEFAULT_ACCOUNT)
    }
}

fn not_found(code: ErrorCode, what: &str, arn: &str) -> ModelError {
    ModelError::new(code, format!("{what} '{arn}' not found"))
}

impl State {
    /// An empty state.
    pub fn new(region: &str, account: &str) -> Self {
        Self {
            region: region.into(),
            account: account.into(),
            load_balancers: BTreeMap::new(),
            target_groups: BTreeMap::new(),
            listeners: BTreeMap::new(),
            rules: BTreeMap::new(),
            instances: BTreeMap::new(),
            tags: BTreeMap::new(),
            ec2: crate::ec2::Ec2::default(),
            alarms: BTreeMap::new(),
            auto_scaling: Default::default(),
            stacks: BTreeMap::new(),
        }
    }

    /// Creates or replaces a metric alarm (CloudWatch allows 5 000 per region).
    pub fn put_metric_alarm(&mut self, alarm: crate::alarm::MetricAlarm) -> Result<()> {
        alarm.validate()?;
        if !self.alarms.contains_key(&alarm.name) && self.alarms.len() >= 5000 {
            return Err(ModelError::new(
                ErrorCode::LimitExceeded,
                "The maximum number of alarms has been reached",
            ));
        }
        self.alarms.insert(alarm.name.clone(), alarm);
        Ok(())
    }

    /// Deletes alarms; all must exist, or nothing is deleted.
    pub fn delete_alarms(&mut self, names: &[String]) -> Result<()> {
        if let Some(n) = names.iter().find(|n| !self.alarms.contains_key(*n)) {
            return Err(ModelError::new(
                ErrorCode::ResourceNotFound,
                format!("The alarm '{n}' does not exist"),
            ));
        }
        for n in names {
            self.alarms.remove(n);
        }
        Ok(())
    }

    /// The zone of a subnet (default or created), as a load balancer sees it.
    pub fn subnet_zone(&self, subnet_id: &str) -> Option<zones::AvailabilityZone> {
        self.ec2
            .subnet(&self.region, subnet_id)
            .map(|s| zones::AvailabilityZone { zone_name: s.availability_zone, subnet_id: s.id })
    }

    /// The VPC of a load balancer: that of its subnets.
    pub fn load_balancer_vpc(&self, lb: &LoadBalancer) -> String {
        lb.zones
            .first()
            .and_then(|z| self.ec2.subnet(&self.region, &z.subnet_id))
            .map_or_else(|| zones::DEFAULT_VPC_ID.to_string(), |s| s.vpc_id)
    }

    fn check_one_vpc(&self, subnets: &[String]) -> Result<()> {
        let vpcs: std::collections::BTreeSet<String> = subnets
            .iter()
            .filter_map(|s| self.ec2.subnet(&self.region, s))
            .map(|s| s.vpc_id)
            .collect();
        if vpcs.len() > 1 {
            return Err(ModelError::new(
                ErrorCode::InvalidConfigurationRequest,
                "All subnets of a load balancer must be in the same VPC",
            ));
        }
        Ok(())
    }

    /// A load balancer by ARN.
    pub fn load_balancer(&self, arn: &str) -> Result<&LoadBalancer> {
        self.load_balancers
            .get(arn)
            .ok_or_else(|| not_found(ErrorCode::LoadBalancerNotFound, "Load balancer", arn))
    }

    /// A target group by ARN.
    pub fn target_group(&self, arn: &str) -> Result<&TargetGroup> {
        self.target_groups
            .get(arn)
            .ok_or_else(|| not_found(ErrorCode::TargetGroupNotFound, "Target group", arn))
    }

    /// A listener by ARN.
    pub fn listener(&self, arn: &str) -> Result<&Listener> {
        self.listeners
            .get(arn)
            .ok_or_else(|| not_found(ErrorCode::ListenerNotFound, "Listener", arn))
    }

    /// Listeners of a load balancer, by port.
    pub fn listeners_of(&self, lb_arn: &str) -> Vec<&Listener> {
        let mut v: Vec<&Listener> =
            self.listeners.values().filter(|l| l.load_balancer_arn == lb_arn).collect();
        v.sort_by_key(|l| l.port);
        v
    }

    /// Rules of a listener, by priority (the default rule is not included).
    pub fn rules_of(&self, listener_arn: &str) -> Vec<&Rule> {
        let mut v: Vec<&Rule> =
            self.rules.values().filter(|r| r.listener_arn == listener_arn).collect();
        v.sort_by_key(|r| r.priority);
        v
    }

    /// ARNs of the load balancers whose listeners or rules forward to `tg_arn`.
    pub fn load_balancers_of_target_group(&self, tg_arn: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let uses =
            |actions: &[Action]| actions.iter().any(|a| a.target_group_arns().contains(&tg_arn));
        for l in self.listeners.values() {
            let in_rules = self.rules.values().any(|r| r.listener_arn == l.arn && uses(&r.actions));
            if (uses(&l.default_actions) || in_rules) && !out.contains(&l.load_balancer_arn) {
                out.push(l.load_balancer_arn.clone());
            }
        }
        out
    }

    /// Creates a load balancer in `subnets` (default-VPC subnet ids; the first two zones when
    /// empty). Returns its ARN.
    pub fn create_load_balancer(
        &mut self,
        name: &str,
        lb_type: LoadBalancerType,
        scheme: Scheme,
        subnets: &[String],
        created_ms: u64,
    ) -> Result<String> {
        if self.load_balancers.values().any(|lb| lb.name == name) {
            return Err(ModelError::new(
                ErrorCode::DuplicateLoadBalancerName,
                format!("A load balancer with the name '{name}' already exists"),
            ));
        }
        let subnets: Vec<String> = if subnets.is_empty() {
            (0..2).map(zones::default_subnet_id).collect()
        } else {
            subnets.to_vec()
        };
        self.check_one_vpc(&subnets)?;
        let mut azs = Vec::new();
        for s in &subnets {
            azs.push(self.subnet_zone(s).ok_or_else(|| {
                ModelError::new(
                    ErrorCode::SubnetNotFound,
                    format!("The subnet ID '{s}' does not exist"),
                )
            })?);
        }
        let used: Vec<u8> = self.load_balancers.values().map(|lb| lb.node_index).collect();
        let node_index = (1..=254u8).find(|i| !used.contains(i)).ok_or_else(|| {
            ModelError::new(
                ErrorCode::TooManyLoadBalancers,
                "The quota for the number of load balancers has been reached",
            )
        })?;
        let lb = LoadBalancer::new(
            &self.region,
            &self.account,
            name,
            lb_type,
            scheme,
            azs,
            node_index,
            created_ms,
        )?;
        let arn = lb.arn.clone();
        self.load_balancers.insert(arn.clone(), lb);
        Ok(arn)
    }

    /// Deletes a load balancer with its listeners and rules.
    pub fn delete_load_balancer(&mut self, arn: &str) -> Result<()> {
        let lb = self.load_balancer(arn)?;
        if lb.attributes.get_bool("deletion_protection.enabled") {
            return Err(ModelError::new(
                ErrorCode::OperationNotPermitted,
                format!("Load balancer '{arn}' cannot be deleted because deletion protection is enabled"),
            ));
        }
        let listeners: Vec<String> = self.listeners_of(arn).iter().map(|l| l.arn.clone()).collect();
        for l in listeners {
            self.delete_listener(&l)?;
        }
        self.load_balancers.remove(arn);
        self.tags.remove(arn);
        Ok(())
    }

    /// Adds a target group built with [`TargetGroup::new`] and customised by the caller.
    pub fn add_target_group(&mut self, tg: TargetGroup) -> Result<String> {
        if self.target_groups.values().any(|t| t.name == tg.name) {
            return Err(ModelError::new(
                ErrorCode::DuplicateTargetGroupName,
                format!(
                    "A target group with the same name '{}' exists, but with different settings",
                    tg.name
                ),
            ));
        }
        tg.health_check.validate(tg.protocol)?;
        let arn = tg.arn.clone();
        self.target_groups.insert(arn.clone(), tg);
        Ok(arn)
    }

    /// Deletes a target group that no listener or rule uses.
    pub fn delete_target_group(&mut self, arn: &str) -> Result<()> {
        self.target_group(arn)?;
        if !self.load_balancers_of_target_group(arn).is_empty() {
            return Err(ModelError::new(
                ErrorCode::ResourceInUse,
                format!("Target group '{arn}' is currently in use by a listener or a rule"),
            ));
        }
        self.target_groups.remove(arn);
        self.tags.remove(arn);
        Ok(())
    }

    fn resolve_target(&self, tg: &TargetGroup, spec: &TargetSpec) -> Result<Target> {
        let invalid = |why: &str| {
            ModelError::new(
                ErrorCode::InvalidTarget,
                format!("The following targets are not valid: '{}': {why}", spec.id),
            )
        };
        let port = spec.port.unwrap_or(tg.port);
        if port == 0 {
            return Err(invalid("the port must be between 1 and 65535"));
        }
        let (address, derived_zone) = match tg.target_type {
            TargetType::Ip => {
                let ip: IpAddr = spec.id.parse().map_err(|_| invalid("not an IP address"))?;
                let zone = match ip {
                    IpAddr::V4(v4) => zones::zone_of_address(v4),
                    IpAddr::V6(_) => 0,
                };
                (ip, zones::zone_name(&self.region, zone))
            }
            TargetType::Instance => {
                let inst = self.instances.get(&spec.id).ok_or_else(|| {
                    ModelError::new(
                        ErrorCode::InvalidTarget,
                        format!("The following targets are not in a running state and cannot be registered: '{}'", spec.id),
                    )
                })?;
                (inst.address, inst.availability_zone.clone())
            }
            TargetType::Lambda | TargetType::Alb => return Err(invalid("unsupported target type")),
        };
        let availability_zone = match &spec.availability_zone {
            Some(z)
                if z == "all" || zones::zone_index(z).is_some() && z.starts_with(&self.region) =>
            {
                z.clone()
            }
            Some(z) => return Err(invalid(&format!("unknown availability zone '{z}'"))),
            None => derived_zone,
        };
        Ok(Target { id: spec.id.clone(), port, availability_zone, address })
    }

    /// Registers targets (already-registered id/port pairs are left as they are).
    pub fn register_targets(&mut self, tg_arn: &str, specs: &[TargetSpec]) -> Result<()> {
        let tg = self.target_group(tg_arn)?;
        let mut resolved = Vec::new();
        for s in specs {
            resolved.push(self.resolve_target(tg, s)?);
        }
        let tg = self
            .target_groups
            .get_mut(tg_arn)
            .ok_or_else(|| not_found(ErrorCode::TargetGroupNotFound, "Target group", tg_arn))?;
        let mut next = tg.targets.clone();
        for t in resolved {
            if !next.iter().any(|o| o.id == t.id && o.port == t.port) {
                next.push(t);
            }
        }
        if next.len() > MAX_TARGETS_PER_TG {
            return Err(ModelError::new(
                ErrorCode::TooManyTargets,
                "You've reached the limit on the number of targets",
            ));
        }
        tg.targets = next;
        Ok(())
    }

    /// Deregisters targets; a spec without a port removes every registration of that id with the
    /// group's port. Unknown targets are an `InvalidTarget` error, as in AWS.
    pub fn deregister_targets(&mut self, tg_arn: &str, specs: &[TargetSpec]) -> Result<()> {
        let tg = self
            .target_groups
            .get_mut(tg_arn)
            .ok_or_else(|| not_found(ErrorCode::TargetGroupNotFound, "Target group", tg_arn))?;
        for s in specs {
            let port = s.port.unwrap_or(tg.port);
            if !tg.targets.iter().any(|t| t.id == s.id && t.port == port) {
                return Err(ModelError::new(
                    ErrorCode::InvalidTarget,
                    format!(
                        "The following targets are not registered in target group '{tg_arn}': '{}'",
                        s.id
                    ),
                ));
            }
        }
        let tg_port = tg.port;
        tg.targets
            .retain(|t| !specs.iter().any(|s| s.id == t.id && s.port.unwrap_or(tg_port) == t.port));
        Ok(())
    }

    fn check_actions(&self, lb: &LoadBalancer, actions: &[Action]) -> Result<()> {
        validate_actions(actions)?;
        for a in actions {
            for tg_arn in a.target_group_arns() {
                let tg = self.target_group(tg_arn)?;
                let compatible = match lb.lb_type {
                    LoadBalancerType::Application => tg.protocol.is_l7(),
                    LoadBalancerType::Network => tg.protocol.is_l4(),
                    LoadBalancerType::Gateway => tg.protocol == Protocol::Geneve,
                };
                if !compatible {
                    return Err(ModelError::new(
                        ErrorCode::IncompatibleProtocols,
                        format!("The target group '{}' has protocol {}, which is not compatible with a {} load balancer", tg.name, tg.protocol.as_str(), lb.lb_type.as_str()),
                    ));
                }
                let users = self.load_balancers_of_target_group(tg_arn);
                if users.iter().any(|u| u != &lb.arn) {
                    return Err(ModelError::new(
                        ErrorCode::TargetGroupAssociationLimit,
                        format!("The target group '{}' is already associated with a different load balancer", tg.name),
                    ));
                }
            }
            if lb.lb_type != LoadBalancerType::Application && a.target_group_arns().is_empty() {
                return Err(ModelError::new(
                    ErrorCode::InvalidLoadBalancerAction,
                    format!(
                        "Action type '{}' is not supported by {} load balancers",
                        a.type_name(),
                        lb.lb_type.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An NLB listener forwards only to target groups whose protocol fits its own: TCP to TCP
    /// or TCP_UDP, TLS to TCP or TLS, UDP to UDP or TCP_UDP, TCP_UDP to TCP_UDP.
    fn check_l4_forward(&self, listener: Protocol, actions: &[Action]) -> Result<()> {
        if !listener.is_l4() {
            return Ok(());
        }
        for a in actions {
            for tg_arn in a.target_group_arns() {
                let tg = self.target_group(tg_arn)?;
                let ok = match listener {
                    Protocol::Tcp => matches!(tg.protocol, Protocol::Tcp | Protocol::TcpUdp),
                    Protocol::Tls => matches!(tg.protocol, Protocol::Tcp | Protocol::Tls),
                    Protocol::Udp => matches!(tg.protocol, Protocol::Udp | Protocol::TcpUdp),
                    _ => tg.protocol == Protocol::TcpUdp,
                };
                if !ok {
                    return Err(ModelError::new(
                        ErrorCode::IncompatibleProtocols,
                        format!(
                            "Listener protocol '{}' is not compatible with target group protocol '{}' of '{}'",
                            listener.as_str(),
                            tg.protocol.as_str(),
                            tg.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The port and protocol a new listener of `lb_arn` gets from what the request named: a
    /// Gateway Load Balancer's listener takes neither (it receives all IP traffic; Weir records
    /// it as GENEVE on 6081), every other listener needs a port and defaults to HTTP.
    pub fn listener_port_protocol(
        &self,
        lb_arn: &str,
        port: Option<u16>,
        protocol: Option<Protocol>,
    ) -> Result<(u16, Protocol)> {
        let lb = self.load_balancer(lb_arn)?;
        if lb.lb_type == LoadBalancerType::Gateway {
            if port.is_some() || protocol.is_some_and(|p| p != Protocol::Geneve) {
                return Err(ModelError::validation(
                    "A listener for a Gateway Load Balancer cannot specify a port or protocol",
                ));
            }
            return Ok((crate::GENEVE_PORT, Protocol::Geneve));
        }
        let port =
            port.ok_or_else(|| ModelError::validation("A listener port must be specified"))?;
        Ok((port, protocol.unwrap_or(Protocol::Http)))
    }

    /// Creates a listener. Returns its ARN.
    pub fn create_listener(
        &mut self,
        lb_arn: &str,
        port: u16,
        protocol: Protocol,
        default_actions: Vec<Action>,
        tls: ListenerTls,
    ) -> Result<String> {
        let lb = self.load_balancer(lb_arn)?;
        if port == 0 {
            return Err(ModelError::validation("Port must be between 1 and 65535"));
        }
        if !lb_takes_protocol(lb.lb_type, protocol) {
            return Err(ModelError::new(
                ErrorCode::IncompatibleProtocols,
                format!(
                    "Protocol '{}' is not supported by {} load balancers",
                    protocol.as_str(),
                    lb.lb_type.as_str()
                ),
            ));
        }
        let (certificates, ssl_policy, alpn_policy) = check_tls(protocol, &tls, &[], None, None)?;
        if self.listeners_of(lb_arn).iter().any(|l| l.port == port) {
            return Err(ModelError::new(
                ErrorCode::DuplicateListener,
                "A listener already exists on this port for this load balancer",
            ));
        }
        if self.listeners_of(lb_arn).len() >= MAX_LISTENERS_PER_LB {
            return Err(ModelError::new(
                ErrorCode::TooManyListeners,
                "You've reached the limit on the number of listeners per load balancer",
            ));
        }
        self.check_actions(lb, &default_actions)?;
        self.check_l4_forward(protocol, &default_actions)?;
        let lb_res = ids::arn_resource(lb_arn)
            .unwrap_or_default()
            .trim_start_matches("loadbalancer/")
            .to_string();
        let arn = format!(
            "{}:listener/{lb_res}/{}",
            ids::elb_arn_prefix(&self.region, &self.account),
            ids::new_hex_id()
        );
        self.listeners.insert(
            arn.clone(),
            Listener {
                arn: arn.clone(),
                load_balancer_arn: lb_arn.to_string(),
                port,
                protocol,
                default_actions,
                attributes: crate::Attributes::new(if lb.lb_type == LoadBalancerType::Network {
                    crate::AttributeSet::NlbListener
                } else {
                    crate::AttributeSet::AlbListener
                }),
                certificates,
                ssl_policy,
                alpn_policy,
            },
        );
        Ok(arn)
    }

    /// Replaces a listener's default actions.
    pub fn modify_listener_default_actions(
        &mut self,
        arn: &str,
        actions: Vec<Action>,
    ) -> Result<()> {
        let l = self.listener(arn)?;
        let lb = self.load_balancer(&l.load_balancer_arn)?;
        self.check_actions(lb, &actions)?;
        self.check_l4_forward(l.protocol, &actions)?;
        if let Some(l) = self.listeners.get_mut(arn) {
            l.default_actions = actions;
        }
        Ok(())
    }

    /// Deletes a listener and its rules.
    pub fn delete_listener(&mut self, arn: &str) -> Result<()> {
        self.listener(arn)?;
        let rules: Vec<String> =
            self.rules.values().filter(|r| r.listener_arn == arn).map(|r| r.arn.clone()).collect();
        for r in rules {
            self.rules.remove(&r);
            self.tags.remove(&r);
        }
        self.listeners.remove(arn);
        self.tags.remove(arn);
        Ok(())
    }

    /// Creates a rule at `priority` (1–50000). Returns its ARN.
    pub fn create_rule(
        &mut self,
        listener_arn: &str,
        priority: u32,
        conditions: Vec<Condition>,
        actions: Vec<Action>,
    ) -> Result<String> {
        let l = self.listener(listener_arn)?;
        let lb = self.load_balancer(&l.load_balancer_arn)?;
        if lb.lb_type != LoadBalancerType::Application {
            return Err(ModelError::validation(
                "Rules are supported only by Application Load Balancers",
            ));
        }
        if !(1..=50000).contains(&priority) {
            return Err(ModelError::validation("Priority must be between 1 and 50000"));
        }
        if conditions.is_empty() {
            return Err(ModelError::validation("A rule must have at least one condition"));
        }
        validate_rule_conditions(&conditions)?;
        if self.rules_of(listener_arn).iter().any(|r| r.priority == RulePriority::Number(priority))
        {
            return Err(ModelError::new(
                ErrorCode::PriorityInUse,
                format!("Priority '{priority}' is currently in use"),
            ));
        }
        let lb_rules = self
            .rules
            .values()
            .filter(|r| {
                self.listeners.get(&r.listener_arn).is_some_and(|x| x.load_balancer_arn == lb.arn)
            })
            .count();
        if lb_rules >= MAX_RULES_PER_ALB {
            return Err(ModelError::new(
                ErrorCode::TooManyRules,
                "You've reached the limit on the number of rules per load balancer",
            ));
        }
        self.check_actions(lb, &actions)?;
        let l_res = ids::arn_resource(listener_arn)
            .unwrap_or_default()
            .trim_start_matches("listener/")
            .to_string();
        let arn = format!(
            "{}:listener-rule/{l_res}/{}",
            ids::elb_arn_prefix(&self.region, &self.account),
            ids::new_hex_id()
        );
        self.rules.insert(
            arn.clone(),
            Rule {
                arn: arn.clone(),
                listener_arn: listener_arn.to_string(),
                priority: RulePriority::Number(priority),
                conditions,
                actions,
            },
        );
        Ok(arn)
    }

    /// A rule by ARN.
    pub fn rule(&self, arn: &str) -> Result<&Rule> {
        self.rules.get(arn).ok_or_else(|| not_found(ErrorCode::RuleNotFound, "Rule", arn))
    }

    /// Changes a listener's port, protocol, default actions, default certificate and/or
    /// security policy.
    pub fn modify_listener(
        &mut self,
        arn: &str,
        port: Option<u16>,
        protocol: Option<Protocol>,
        actions: Option<Vec<Action>>,
        tls: ListenerTls,
    ) -> Result<()> {
        let l = self.listener(arn)?.clone();
        let lb = self.load_balancer(&l.load_balancer_arn)?;
        if lb.lb_type == LoadBalancerType::Gateway && (port.is_some() || protocol.is_some()) {
            return Err(ModelError::validation(
                "A listener for a Gateway Load Balancer cannot specify a port or protocol",
            ));
        }
        if let Some(p) = port {
            if p == 0 {
                return Err(ModelError::validation("Port must be between 1 and 65535"));
            }
            if p != l.port && self.listeners_of(&lb.arn).iter().any(|o| o.port == p) {
                return Err(ModelError::new(
                    ErrorCode::DuplicateListener,
                    "A listener already exists on this port for this load balancer",
                ));
            }
        }
        if let Some(p) = protocol {
            if !lb_takes_protocol(lb.lb_type, p) {
                return Err(ModelError::new(
                    ErrorCode::IncompatibleProtocols,
                    format!(
                        "Protocol '{}' is not supported by {} load balancers",
                        p.as_str(),
                        lb.lb_type.as_str()
                    ),
                ));
            }
        }
        let new_protocol = protocol.unwrap_or(l.protocol);
        let (certificates, ssl_policy, alpn_policy) = check_tls(
            new_protocol,
            &tls,
            &l.certificates,
            l.ssl_policy.as_deref(),
            l.alpn_policy.as_deref(),
        )?;
        if let Some(a) = &actions {
            self.check_actions(lb, a)?;
        }
        self.check_l4_forward(new_protocol, actions.as_deref().unwrap_or(&l.default_actions))?;
        if let Some(l) = self.listeners.get_mut(arn) {
            l.port = port.unwrap_or(l.port);
            l.protocol = protocol.unwrap_or(l.protocol);
            l.certificates = certificates;
            l.ssl_policy = ssl_policy;
            l.alpn_policy = alpn_policy;
            if let Some(a) = actions {
                l.default_actions = a;
            }
        }
        Ok(())
    }

    /// Adds non-default certificates to an HTTPS listener (already present ones are kept once).
    pub fn add_listener_certificates(&mut self, arn: &str, certs: &[String]) -> Result<()> {
        let l = self.listener(arn)?;
        if !matches!(l.protocol, Protocol::Https | Protocol::Tls) {
            return Err(ModelError::new(
                ErrorCode::InvalidConfigurationRequest,
                format!(
                    "Certificates apply only to HTTPS and TLS listeners; listener '{arn}' uses {}",
                    l.protocol.as_str()
                ),
            ));
        }
        let mut all = l.certificates.clone();
        for c in certs {
            if !all.contains(c) {
                all.push(c.clone());
            }
        }
        if all.len() > MAX_CERTIFICATES_PER_LISTENER + 1 {
            return Err(ModelError::new(
                ErrorCode::TooManyCertificates,
                format!(
                    "A listener can have at most {MAX_CERTIFICATES_PER_LISTENER} certificates besides the default"
                ),
            ));
        }
        if let Some(l) = self.listeners.get_mut(arn) {
            l.certificates = all;
        }
        Ok(())
    }

    /// Removes non-default certificates from a listener. The default one cannot be removed.
    pub fn remove_listener_certificates(&mut self, arn: &str, certs: &[String]) -> Result<()> {
        let l = self.listener(arn)?;
        if l.certificates.first().is_some_and(|d| certs.contains(d)) {
            return Err(ModelError::new(
                ErrorCode::OperationNotPermitted,
                "The default certificate of a listener cannot be removed; modify the listener instead",
            ));
        }
        if let Some(l) = self.listeners.get_mut(arn) {
            l.certificates.retain(|c| !certs.contains(c));
        }
        Ok(())
    }

    /// Replaces a rule's conditions and/or actions.
    pub fn modify_rule(
        &mut self,
        arn: &str,
        conditions: Option<Vec<Condition>>,
        actions: Option<Vec<Action>>,
    ) -> Result<()> {
        let r = self.rule(arn)?;
        let l = self.listener(&r.listener_arn)?;
        let lb = self.load_balancer(&l.load_balancer_arn)?;
        if let Some(c) = &conditions {
            if c.is_empty() {
                return Err(ModelError::validation("A rule must have at least one condition"));
            }
            validate_rule_conditions(c)?;
        }
        if let Some(a) = &actions {
            self.check_actions(lb, a)?;
        }
        if let Some(r) = self.rules.get_mut(arn) {
            if let Some(c) = conditions {
                r.conditions = c;
            }
            if let Some(a) = actions {
                r.actions = a;
            }
        }
        Ok(())
    }

    /// Sets several rules' priorities at once; the result must leave every priority on each
    /// listener unique.
    pub fn set_rule_priorities(&mut self, changes: &[(String, u32)]) -> Result<()> {
        let mut next = self.rules.clone();
        for (arn, p) in changes {
            if !(1..=50000).contains(p) {
                return Err(ModelError::validation("Priority must be between 1 and 50000"));
            }
            let r =
                next.get_mut(arn).ok_or_else(|| not_found(ErrorCode::RuleNotFound, "Rule", arn))?;
            r.priority = RulePriority::Number(*p);
        }
        for (arn, _) in changes {
            let r = &next[arn];
            if next
                .values()
                .filter(|o| o.listener_arn == r.listener_arn && o.priority == r.priority)
                .count()
                > 1
            {
                return Err(ModelError::new(
                    ErrorCode::PriorityInUse,
                    format!("Priority '{}' is currently in use", r.priority.to_aws()),
                ));
            }
        }
        self.rules = next;
        Ok(())
    }

    /// Deletes a rule.
    pub fn delete_rule(&mut self, arn: &str) -> Result<()> {
        self.rules.remove(arn).ok_or_else(|| not_found(ErrorCode::RuleNotFound, "Rule", arn))?;
        self.tags.remove(arn);
        Ok(())
    }

    /// Checks that `arn` names an existing load balancer, target group, listener or rule.
    pub fn check_taggable(&self, arn: &str) -> Result<()> {
        match ids::arn_resource(arn).and_then(|r| r.split('/').next()) {
            Some("loadbalancer") => self.load_balancer(arn).map(|_| ()),
            Some("targetgroup") => self.target_group(arn).map(|_| ()),
            Some("listener") => self.listener(arn).map(|_| ()),
            Some("listener-rule") => self.rule(arn).map(|_| ()),
            _ => Err(ModelError::validation(format!("'{arn}' is not a valid resource ARN"))),
        }
    }

    /// Adds or overwrites tags on resources (at most 50 per resource; keys 1–128 characters
    /// not starting with `aws:`, values up to 256).
    pub fn add_tags(&mut self, arns: &[String], tags: &[(String, String)]) -> Result<()> {
        for (k, v) in tags {
            if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
                return Err(ModelError::validation(format!(
                    "Tag '{k}' is not valid: keys are 1-128 characters and must not start with 'aws:'; values are at most 256 characters"
                )));
            }
        }
        let mut next = self.tags.clone();
        for arn in arns {
            self.check_taggable(arn)?;
            let t = next.entry(arn.clone()).or_default();
            t.extend(tags.iter().cloned());
            if t.len() > 50 {
                return Err(ModelError::new(
                    ErrorCode::TooManyTags,
                    format!("The quota for the number of tags that can be assigned to '{arn}' has been reached"),
                ));
            }
        }
        self.tags = next;
        Ok(())
    }

    /// Removes tag keys from resources.
    pub fn remove_tags(&mut self, arns: &[String], keys: &[String]) -> Result<()> {
        for arn in arns {
            self.check_taggable(arn)?;
        }
        for arn in arns {
            if let Some(t) = self.tags.get_mut(arn) {
                t.retain(|k, _| !keys.contains(k));
            }
        }
        Ok(())
    }

    /// Moves a load balancer to other subnets (an ALB needs at least two zones).
    pub fn set_subnets(&mut self, arn: &str, subnets: &[String]) -> Result<()> {
        let lb = self.load_balancer(arn)?;
        self.check_one_vpc(subnets)?;
        let mut azs = Vec::new();
        for s in subnets {
            azs.push(self.subnet_zone(s).ok_or_else(|| {
                ModelError::new(
                    ErrorCode::SubnetNotFound,
                    format!("The subnet ID '{s}' does not exist"),
                )
            })?);
        }
        // The constructor's rules (two zones for an ALB, one subnet per zone) apply here too.
        LoadBalancer::new(
            &self.region,
            &self.account,
            &lb.name,
            lb.lb_type,
            lb.scheme,
            azs.clone(),
            lb.node_index,
            lb.created_ms,
        )?;
        if let Some(lb) = self.load_balancers.get_mut(arn) {
            lb.zones = azs;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

fn lb_takes_protocol(t: LoadBalancerType, p: Protocol) -> bool {
    match t {
        LoadBalancerType::Application => p.is_l7(),
        LoadBalancerType::Network => p.is_l4(),
        LoadBalancerType::Gateway => p == Protocol::Geneve,
    }
}

/// The certificate list, security policy and ALPN policy a listener ends up with: HTTPS and
/// TLS need a default certificate and get the default policy when they name none; only TLS
/// takes an ALPN policy; plain protocols have none of them.
fn check_tls(
    protocol: Protocol,
    tls: &ListenerTls,
    current_certs: &[String],
    current_policy: Option<&str>,
    current_alpn: Option<&str>,
) -> Result<(Vec<String>, Option<String>, Option<String>)> {
    let alpn = if protocol == Protocol::Tls {
        let a = tls.alpn_policy.as_deref().or(current_alpn).unwrap_or("None");
        if alpn_protocols(a).is_none() {
            return Err(ModelError::new(
                ErrorCode::ALPNPolicyNotFound,
                format!("ALPN policy '{a}' not found"),
            ));
        }
        Some(a.to_string())
    } else {
        if tls.alpn_policy.is_some() {
            return Err(ModelError::new(
                ErrorCode::InvalidConfigurationRequest,
                format!("ALPN policies apply only to TLS listeners, not {}", protocol.as_str()),
            ));
        }
        None
    };
    if !matches!(protocol, Protocol::Https | Protocol::Tls) {
        if !tls.certificates.is_empty() || tls.ssl_policy.is_some() {
            return Err(ModelError::new(
                ErrorCode::InvalidConfigurationRequest,
                format!(
                    "Certificates and SSL policies apply only to HTTPS and TLS listeners, not {}",
                    protocol.as_str()
                ),
            ));
        }
        return Ok((Vec::new(), None, None));
    }
    if tls.certificates.len() > 1 {
        return Err(ModelError::validation(
            "A listener takes exactly one default certificate; add others with AddListenerCertificates",
        ));
    }
    let mut certs = current_certs.to_vec();
    if let Some(c) = tls.certificates.first() {
        if !c.starts_with("arn:") || !c.contains(":certificate/") {
            return Err(ModelError::new(
                ErrorCode::CertificateNotFound,
                format!("Certificate '{c}' not found"),
            ));
        }
        certs.retain(|x| x != c);
        certs.insert(0, c.clone());
    }
    if certs.is_empty() {
        return Err(ModelError::validation(
            "A certificate must be specified for HTTPS and TLS listeners",
        ));
    }
    let policy = tls
        .ssl_policy
        .clone()
        .or_else(|| current_policy.map(str::to_string))
        .unwrap_or_else(|| crate::tls_policies::DEFAULT_POLICY.to_string());
    if crate::tls_policies::policy(&policy).is_none() {
        return Err(ModelError::new(
            ErrorCode::SSLPolicyNotFound,
            format!("SSL policy '{policy}' not found"),
        ));
    }
    Ok((certs, Some(policy), alpn))
}
