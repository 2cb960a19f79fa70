//! Intrinsic-function evaluation over JSON-form template values.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::deploy::StackError;

/// What intrinsics can see while resources are created.
#[derive(Debug, Default, Clone)]
pub struct Context {
    /// Parameter values and pseudo parameters (`AWS::Region`, …).
    pub refs: BTreeMap<String, Value>,
    /// `Fn::GetAtt` values: logical id → attribute → value.
    pub attrs: BTreeMap<String, BTreeMap<String, Value>>,
    /// Evaluated conditions.
    pub conditions: BTreeMap<String, bool>,
    /// The `Mappings` section.
    pub mappings: Map<String, Value>,
    /// Region, for `Fn::GetAZs`.
    pub region: String,
}

/// The marker for `AWS::NoValue`: properties evaluating to it are removed.
pub const NO_VALUE: &str = "\u{0}AWS::NoValue";

fn err(msg: impl Into<String>) -> StackError {
    StackError::Template(format!("Template error: {}", msg.into()))
}

fn as_str(v: &Value) -> Result<String, StackError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(err(format!("expected a string, got {other}"))),
    }
}

/// Logical ids and parameters a value refers to (for dependency ordering).
pub fn references(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("Ref") {
                out.insert(r.clone());
            }
            if let Some(g) = m.get("Fn::GetAtt") {
                match g {
                    Value::Array(a) => {
                        if let Some(Value::String(r)) = a.first() {
                            out.insert(r.clone());
                        }
                    }
                    Value::String(s) => {
                        out.insert(s.split('.').next().unwrap_or_default().to_string());
                    }
                    _ => {}
                }
            }
            if let Some(s) = m.get("Fn::Sub") {
                let text = match s {
                    Value::String(t) => Some(t.as_str()),
                    Value::Array(a) => a.first().and_then(Value::as_str),
                    _ => None,
                };
                // Variables the second argument defines are local, not references.
                let local = match s {
                    Value::Array(a) => a.get(1).and_then(Value::as_object),
                    _ => None,
                };
                if let Some(t) = text {
                    for var in sub_vars(t) {
                        if local.is_some_and(|l| l.contains_key(&var)) {
                            continue;
                        }
                        out.insert(var.split('.').next().unwrap_or_default().to_string());
                    }
                }
            }
            for v in m.values() {
                references(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

fn sub_vars(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        if let Some(literal) = after.strip_prefix('!') {
            rest = literal;
            continue;
        }
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].trim().to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

impl Context {
    /// Evaluates a condition expression.
    pub fn condition(&self, v: &Value) -> Result<bool, StackError> {
        match self.eval(v)? {
            Value::Bool(b) => Ok(b),
            Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
            other => Err(err(format!("a condition must evaluate to a boolean, got {other}"))),
        }
    }

    /// Evaluates every intrinsic in `v`.
    pub fn eval(&self, v: &Value) -> Result<Value, StackError> {
        match v {
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for x in a {
                    let e = self.eval(x)?;
                    if e != Value::String(NO_VALUE.into()) {
                        out.push(e);
                    }
                }
                Ok(Value::Array(out))
            }
            Value::Object(m) if m.len() == 1 => {
                let (k, arg) = m.iter().next().ok_or_else(|| err("empty object"))?;
                match k.as_str() {
                    "Ref" => self.reference(&as_str(arg)?),
                    "Condition" => Ok(Value::Bool(
                        *self
                            .conditions
                            .get(&as_str(arg)?)
                            .ok_or_else(|| err(format!("unknown condition {arg}")))?,
                    )),
                    "Fn::GetAtt" => self.get_att(arg),
                    "Fn::Sub" => self.sub(arg),
                    "Fn::Join" => self.join(arg),
                    "Fn::Select" => self.select(arg),
                    "Fn::Split" => self.split(arg),
                    "Fn::FindInMap" => self.find_in_map(arg),
                    "Fn::GetAZs" => Ok(Value::Array(
                        (0..3)
                            .map(|i| Value::String(weir_model::zones::zone_name(&self.region, i)))
                            .collect(),
                    )),
                    "Fn::Base64" => Ok(Value::String(base64(as_str(&self.eval(arg)?)?.as_bytes()))),
                    "Fn::If" => self.fn_if(arg),
                    "Fn::Equals" => {
                        let a = self.eval(arg)?;
                        match a.as_array().map(Vec::as_slice) {
                            Some([x, y]) => Ok(Value::Bool(loose_eq(x, y))),
                            _ => Err(err("Fn::Equals takes a list of two values")),
                        }
                    }
                    "Fn::And" | "Fn::Or" => {
                        let items =
                            arg.as_array().ok_or_else(|| err(format!("{k} takes a list")))?;
                        let vals = items
                            .iter()
                            .map(|c| self.condition(c))
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(Value::Bool(if k == "Fn::And" {
                            vals.iter().all(|b| *b)
                        } else {
                            vals.iter().any(|b| *b)
                        }))
                    }
                    "Fn::Not" => {
                        let items = arg
                            .as_array()
                            .ok_or_else(|| err("Fn::Not takes a list of one condition"))?;
                        let first = items
                            .first()
                            .ok_or_else(|| err("Fn::Not takes a list of one condition"))?;
                        Ok(Value::Bool(!self.condition(first)?))
                    }
                    k if k.starts_with("Fn::") => {
                        Err(err(format!("unsupported intrinsic function {k}")))
                    }
                    _ => {
                        let mut out = Map::new();
                        out.insert(k.clone(), self.eval(arg)?);
                        Ok(Value::Object(out))
                    }
                }
            }
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    let e = self.eval(v)?;
                    if e != Value::String(NO_VALUE.into()) {
                        out.insert(k.clone(), e);
                    }
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn reference(&self, name: &str) -> Result<Value, StackError> {
        if name == "AWS::NoValue" {
            return Ok(Value::String(NO_VALUE.into()));
        }
        self.refs.get(name).cloned().ok_or_else(|| {
            err(format!(
                "Unresolved resource dependencies [{name}] in the Resources block of the template"
            ))
        })
    }

    fn get_att(&self, arg: &Value) -> Result<Value, StackError> {
        let (res, att) = match arg {
            Value::Array(a) if a.len() == 2 => (as_str(&a[0])?, as_str(&self.eval(&a[1])?)?),
            Value::String(s) => match s.split_once('.') {
                Some((a, b)) => (a.to_string(), b.to_string()),
                None => return Err(err(format!("Fn::GetAtt '{s}' must name Resource.Attribute"))),
            },
            _ => return Err(err("Fn::GetAtt takes [Resource, Attribute]")),
        };
        let attrs = self
            .attrs
            .get(&res)
            .ok_or_else(|| err(format!("Fn::GetAtt refers to unknown resource {res}")))?;
        attrs
            .get(&att)
            .cloned()
            .ok_or_else(|| err(format!("Fn::GetAtt: resource {res} has no attribute {att}")))
    }

    fn sub(&self, arg: &Value) -> Result<Value, StackError> {
        let (text, vars) = match arg {
            Value::String(s) => (s.clone(), Map::new()),
            Value::Array(a) if a.len() == 2 => {
                let vars = match self.eval(&a[1])? {
                    Value::Object(m) => m,
                    _ => return Err(err("Fn::Sub variables must be a mapping")),
                };
                (as_str(&a[0])?, vars)
            }
            _ => return Err(err("Fn::Sub takes a string or [string, variables]")),
        };
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            if let Some(lit) = after.strip_prefix('!') {
                out.push_str("${");
                rest = lit;
                continue;
            }
            let j = after.find('}').ok_or_else(|| err("Fn::Sub: unterminated ${"))?;
            let name = after[..j].trim();
            let value = if let Some(v) = vars.get(name) {
                v.clone()
            } else if let Some((r, a)) = name.split_once('.').filter(|_| !name.starts_with("AWS::"))
            {
                self.get_att(&Value::Array(vec![r.into(), a.into()]))?
            } else {
                self.reference(name)?
            };
            out.push_str(&as_str(&value)?);
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }

    fn join(&self, arg: &Value) -> Result<Value, StackError> {
        let a = arg
            .as_array()
            .filter(|a| a.len() == 2)
            .ok_or_else(|| err("Fn::Join takes [delimiter, list]"))?;
        let delim = as_str(&a[0])?;
        let items = self.eval(&a[1])?;
        let items =
            items.as_array().ok_or_else(|| err("Fn::Join's second argument must be a list"))?;
        Ok(Value::String(items.iter().map(as_str).collect::<Result<Vec<_>, _>>()?.join(&delim)))
    }

    fn select(&self, arg: &Value) -> Result<Value, StackError> {
        let a = arg
            .as_array()
            .filter(|a| a.len() == 2)
            .ok_or_else(|| err("Fn::Select takes [index, list]"))?;
        let idx: usize = as_str(&self.eval(&a[0])?)?
            .parse()
            .map_err(|_| err("Fn::Select index must be a number"))?;
        let list = self.eval(&a[1])?;
        list.as_array()
            .and_then(|l| l.get(idx))
            .cloned()
            .ok_or_else(|| err(format!("Fn::Select index {idx} is out of range")))
    }

    fn split(&self, arg: &Value) -> Result<Value, StackError> {
        let a = arg
            .as_array()
            .filter(|a| a.len() == 2)
            .ok_or_else(|| err("Fn::Split takes [delimiter, string]"))?;
        let delim = as_str(&a[0])?;
        let s = as_str(&self.eval(&a[1])?)?;
        Ok(Value::Array(s.split(delim.as_str()).map(|p| Value::String(p.into())).collect()))
    }

    fn find_in_map(&self, arg: &Value) -> Result<Value, StackError> {
        let a = self.eval(arg)?;
        let a = a
            .as_array()
            .filter(|a| a.len() == 3)
            .ok_or_else(|| err("Fn::FindInMap takes [map, top key, second key]"))?;
        let (m, k1, k2) = (as_str(&a[0])?, as_str(&a[1])?, as_str(&a[2])?);
        self.mappings
            .get(&m)
            .and_then(|x| x.get(&k1))
            .and_then(|x| x.get(&k2))
            .cloned()
            .ok_or_else(|| err(format!("Fn::FindInMap: no value for [{m}, {k1}, {k2}]")))
    }

    fn fn_if(&self, arg: &Value) -> Result<Value, StackError> {
        let a = arg
            .as_array()
            .filter(|a| a.len() == 3)
            .ok_or_else(|| err("Fn::If takes [condition, then, else]"))?;
        let name = as_str(&a[0])?;
        let c = *self
            .conditions
            .get(&name)
            .ok_or_else(|| err(format!("Fn::If refers to unknown condition {name}")))?;
        self.eval(if c { &a[1] } else { &a[2] })
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::Number(n)) | (Value::Number(n), Value::String(x)) => {
            *x == n.to_string()
        }
        _ => a == b,
    }
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        let mut c = Context { region: "us-east-1".into(), ..Default::default() };
        c.refs.insert("Env".into(), json!("prod"));
        c.refs.insert("AWS::Region".into(), json!("us-east-1"));
        c.attrs
            .entry("LB".into())
            .or_default()
            .insert("DNSName".into(), json!("lb-1.elb.weir.internal"));
        c.conditions.insert("IsProd".into(), true);
        c.mappings = json!({"Sizes": {"prod": {"Count": 3}}}).as_object().unwrap().clone();
        c
    }

    #[test]
    fn functions() {
        let c = ctx();
        assert_eq!(
            c.eval(&json!({"Fn::Sub": "${Env}-${AWS::Region}-${LB.DNSName}-${!Literal}"})).unwrap(),
            json!("prod-us-east-1-lb-1.elb.weir.internal-${Literal}")
        );
        assert_eq!(
            c.eval(&json!({"Fn::Sub": ["${X}-${Env}", {"X": "a"}]})).unwrap(),
            json!("a-prod")
        );
        assert_eq!(
            c.eval(&json!({"Fn::Join": ["-", ["a", {"Ref": "Env"}]]})).unwrap(),
            json!("a-prod")
        );
        assert_eq!(
            c.eval(&json!({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]})).unwrap(),
            json!("b")
        );
        assert_eq!(
            c.eval(&json!({"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "Count"]})).unwrap(),
            json!(3)
        );
        assert_eq!(c.eval(&json!({"Fn::If": ["IsProd", 1, 2]})).unwrap(), json!(1));
        assert_eq!(c.eval(&json!({"Fn::Equals": ["3", 3]})).unwrap(), json!(true));
        assert_eq!(c.eval(&json!({"Fn::Base64": "hello"})).unwrap(), json!("aGVsbG8="));
        assert_eq!(
            c.eval(&json!({"A": {"Ref": "AWS::NoValue"}, "B": 1})).unwrap(),
            json!({"B": 1})
        );
        assert!(c.eval(&json!({"Ref": "Missing"})).is_err());
        assert!(c.eval(&json!({"Fn::Bogus": 1})).is_err());
    }

    #[test]
    fn dependency_scan() {
        let mut s = BTreeSet::new();
        references(
            &json!({"a": {"Ref": "X"}, "b": [{"Fn::GetAtt": ["Y", "Z"]}], "c": {"Fn::Sub": "${W.Arn}${!No}"}}),
            &mut s,
        );
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec!["W", "X", "Y"]);
    }
}
