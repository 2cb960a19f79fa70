//! Template parsing: YAML short tags are rewritten to their JSON long forms so that everything
//! downstream works on one `serde_json::Value` shape.

use serde_json::{Map, Value};

use crate::deploy::StackError;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The whole document in JSON form.
    pub body: Value,
}

impl Template {
    /// A top-level section (`Resources`, `Parameters`, …) or an empty object.
    pub fn section(&self, name: &str) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.body
            .get(name)
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }
}

/// Parses a JSON or YAML template.
pub fn parse_template(text: &str) -> Result<Template, StackError> {
    let trimmed = text.trim_start();
    let body = if trimmed.starts_with('{') {
        serde_json::from_str(text).map_err(|e| {
            StackError::Template(format!("Template format error: JSON not well-formed. ({e})"))
        })?
    } else {
        let y: serde_norway::Value = serde_norway::from_str(text).map_err(|e| {
            StackError::Template(format!("Template format error: YAML not well-formed. ({e})"))
        })?;
        yaml_to_json(y)?
    };
    if !body.is_object() {
        return Err(StackError::Template(
            "Template format error: the template must be a mapping".into(),
        ));
    }
    match body.get("Resources") {
        Some(Value::Object(r)) if !r.is_empty() => {}
        _ => {
            return Err(StackError::Template(
                "Template format error: At least one Resources member must be defined.".into(),
            ))
        }
    }
    Ok(Template { body })
}

fn yaml_to_json(v: serde_norway::Value) -> Result<Value, StackError> {
    use serde_norway::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(StackError::Template(format!(
                            "Template format error: unsupported mapping key {other:?}"
                        )))
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(t.value)?;
            let (key, val) = match name {
                "Ref" => ("Ref".to_string(), inner),
                "Condition" => ("Condition".to_string(), inner),
                "GetAtt" => {
                    let v = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((a, b)) => Value::Array(vec![a.into(), b.into()]),
                            None => return Err(StackError::Template(format!("Template error: !GetAtt '{s}' must be of the form Resource.Attribute"))),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_string(), v)
                }
                "Sub" | "Join" | "Select" | "Split" | "If" | "Equals" | "And" | "Or" | "Not"
                | "FindInMap" | "GetAZs" | "Base64" | "ImportValue" | "Cidr" | "Length"
                | "ToJsonString" => (format!("Fn::{name}"), inner),
                _ => {
                    return Err(StackError::Template(format!(
                        "Template format error: unknown tag !{name}"
                    )))
                }
            };
            let mut m = Map::new();
            m.insert(key, val);
            Value::Object(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tags_become_long_forms() {
        let t = parse_template("Resources:\n  A:\n    Type: X\n    Properties:\n      P: !Ref B\n      Q: !GetAtt C.DNSName\n      R: !Sub '${A}-x'\n      S: !Join ['-', [!Ref B, c]]\n").unwrap();
        let p = &t.body["Resources"]["A"]["Properties"];
        assert_eq!(p["P"], serde_json::json!({"Ref": "B"}));
        assert_eq!(p["Q"], serde_json::json!({"Fn::GetAtt": ["C", "DNSName"]}));
        assert_eq!(p["R"], serde_json::json!({"Fn::Sub": "${A}-x"}));
        assert_eq!(p["S"], serde_json::json!({"Fn::Join": ["-", [{"Ref": "B"}, "c"]]}));
    }

    #[test]
    fn errors_are_clear() {
        assert!(parse_template("Resources: {}")
            .unwrap_err()
            .to_string()
            .contains("At least one Resources member"));
        assert!(parse_template("{bad json")
            .unwrap_err()
            .to_string()
            .contains("JSON not well-formed"));
        assert!(parse_template("Resources:\n  A: !Bogus x\n")
            .unwrap_err()
            .to_string()
            .contains("unknown tag"));
        assert!(parse_template("Resources: [1, 2").is_err());
    }
}
