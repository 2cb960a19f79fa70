//! `weir stack deploy|delete|events`: a CloudFormation client for a running Weir (`weir serve`
//! or `weir up`). It speaks the same Query API the `aws` CLI does, signing with SigV4 when
//! access keys are set (`WEIR_ACCESS_KEY_ID`/`WEIR_SECRET_ACCESS_KEY`, else
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`), and prints the stack's events as they happen.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CloudFormation endpoint.
pub struct Client {
    addr: SocketAddr,
    keys: Option<(String, String)>,
}

/// A Query API error response.
#[derive(Debug)]
pub struct ApiError {
    /// AWS error code.
    pub code: String,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The text of the first `<tag>` element in `xml`, unescaped.
pub fn tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(unescape(&xml[start..end]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The `<member>` elements directly inside the first `<list>` element (no nested lists).
fn members<'a>(xml: &'a str, list: &str) -> Vec<&'a str> {
    let open = format!("<{list}>");
    let Some(start) = xml.find(&open).map(|i| i + open.len()) else { return Vec::new() };
    let Some(end) = xml[start..].find(&format!("</{list}>")).map(|i| i + start) else {
        return Vec::new();
    };
    xml[start..end]
        .split("<member>")
        .filter_map(|m| m.strip_suffix("</member>").or_else(|| m.split("</member>").next()))
        .filter(|m| !m.is_empty())
        .collect()
}

/// One stack event as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    id: String,
    time: String,
    logical: String,
    kind: String,
    status: String,
    reason: Option<String>,
}

impl Client {
    /// A client of the API at `addr`, with access keys from the environment if set.
    pub fn new(addr: SocketAddr) -> Self {
        let env = |a: &str, b: &str| std::env::var(a).or_else(|_| std::env::var(b)).ok();
        let keys = match (
            env("WEIR_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            env("WEIR_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(k), Some(s)) => Some((k, s)),
            _ => None,
        };
        Self { addr, keys }
    }

    /// Calls `action` with `params`; returns the response body, or the API error.
    pub async fn call(&self, action: &str, params: &[(&str, String)]) -> Result<String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action).append_pair("Version", "2010-05-15");
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let body = form.finish();
        let host = self.addr.to_string();
        let mut head = format!(
            "POST / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        if let Some((key, secret)) = &self.keys {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let (date, auth) = weir_api::sigv4::sign(
                key,
                secret,
                weir_model::ids::DEFAULT_REGION,
                "cloudformation",
                &host,
                body.as_bytes(),
                now,
            );
            head.push_str(&format!("x-amz-date: {date}\r\nauthorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to the Weir API at {}", self.addr))?;
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (status_line, rest) = text.split_once("\r\n").unwrap_or((&text, ""));
        let ok = status_line.split(' ').nth(1).is_some_and(|c| c.starts_with('2'));
        let body = rest.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        let body = dechunk(&body);
        if ok {
            Ok(body)
        } else {
            Err(ApiError {
                code: tag(&body, "Code").unwrap_or_else(|| status_line.to_string()),
                message: tag(&body, "Message").unwrap_or_default(),
            }
            .into())
        }
    }

    /// The stack's status, or `None` when it does not exist.
    pub async fn status(&self, stack: &str) -> Result<Option<String>> {
        match self.call("DescribeStacks", &[("StackName", stack.to_string())]).await {
            Ok(body) => Ok(tag(&body, "StackStatus")),
            Err(e)
                if e.downcast_ref::<ApiError>()
                    .is_some_and(|a| a.message.contains("does not exist")) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Events of `stack`, oldest first.
    pub async fn events(&self, stack: &str) -> Result<Vec<Event>> {
        let body = self.call("DescribeStackEvents", &[("StackName", stack.to_string())]).await?;
        let mut out: Vec<Event> = members(&body, "StackEvents")
            .into_iter()
            .map(|m| Event {
                id: tag(m, "EventId").unwrap_or_default(),
                time: tag(m, "Timestamp").unwrap_or_default(),
                logical: tag(m, "LogicalResourceId").unwrap_or_default(),
                kind: tag(m, "ResourceType").unwrap_or_default(),
                status: tag(m, "ResourceStatus").unwrap_or_default(),
                reason: tag(m, "ResourceStatusReason"),
            })
            .collect();
        out.reverse();
        Ok(out)
    }
}

/// A body sent with `transfer-encoding: chunked`, joined.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else { return body.to_string() };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { return body.to_string() };
        if n == 0 || after.len() < n {
            return if out.is_empty() && n != 0 { body.to_string() } else { out };
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// Prints events in the `aws cloudformation describe-stack-events` spirit, one per line.
pub fn print_events(events: &[Event]) {
    for e in events {
        let reason = e.reason.as_deref().map(|r| format!("  {r}")).unwrap_or_default();
        println!("{}  {:<44} {:<28} {}{reason}", e.time, e.status, e.logical, e.kind);
    }
}

/// `weir stack deploy`: creates the stack, or updates it; prints the events of this operation.
/// Fails when the stack rolled back.
pub async fn deploy(
    client: &Client,
    stack: &str,
    template: &str,
    params: &BTreeMap<String, String>,
) -> Result<()> {
    let before: Vec<String> = match client.status(stack).await? {
        Some(_) => client.events(stack).await?.into_iter().map(|e| e.id).collect(),
        None => Vec::new(),
    };
    let exists = client.status(stack).await?.is_some_and(|s| s != "REVIEW_IN_PROGRESS");
    let mut args = vec![("StackName", stack.to_string()), ("TemplateBody", template.to_string())];
    let keys: Vec<String> = (1..=params.len())
        .flat_map(|i| {
            [
                format!("Parameters.member.{i}.ParameterKey"),
                format!("Parameters.member.{i}.ParameterValue"),
            ]
        })
        .collect();
    for (i, (k, v)) in params.iter().enumerate() {
        args.push((keys[2 * i].as_str(), k.clone()));
        args.push((keys[2 * i + 1].as_str(), v.clone()));
    }
    let action = if exists { "UpdateStack" } else { "CreateStack" };
    match client.call(action, &args).await {
        Ok(_) => {}
        Err(e)
            if e.downcast_ref::<ApiError>()
                .is_some_and(|a| a.message == "No updates are to be performed.") =>
        {
            println!("stack {stack}: no changes to deploy");
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    let events: Vec<Event> =
        client.events(stack).await?.into_iter().filter(|e| !before.contains(&e.id)).collect();
    print_events(&events);
    let status = client.status(stack).await?.unwrap_or_default();
    if status.ends_with("ROLLBACK_COMPLETE") || status.ends_with("FAILED") {
        bail!("stack {stack}: {status}");
    }
    println!("stack {stack}: {status}");
    Ok(())
}

/// `weir stack delete`: deletes the stack; prints the events of the deletion.
pub async fn delete(client: &Client, stack: &str) -> Result<()> {
    let Some(_) = client.status(stack).await? else {
        println!("stack {stack} does not exist");
        return Ok(());
    };
    let id =
        tag(&client.call("DescribeStacks", &[("StackName", stack.to_string())]).await?, "StackId")
            .unwrap_or_else(|| stack.to_string());
    let before: Vec<String> = client.events(&id).await?.into_iter().map(|e| e.id).collect();
    client.call("DeleteStack", &[("StackName", stack.to_string())]).await?;
    let events: Vec<Event> =
        client.events(&id).await?.into_iter().filter(|e| !before.contains(&e.id)).collect();
    print_events(&events);
    let body = client.call("DescribeStacks", &[("StackName", id)]).await?;
    let status = tag(&body, "StackStatus").unwrap_or_default();
    if status != "DELETE_COMPLETE" {
        bail!("stack {stack}: {status}");
    }
    println!("stack {stack}: DELETE_COMPLETE");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_responses() {
        let xml = "<R><StackEvents><member><EventId>b</EventId><ResourceStatusReason>x &amp; y</ResourceStatusReason></member><member><EventId>a</EventId></member></StackEvents></R>";
        let m = members(xml, "StackEvents");
        assert_eq!(m.len(), 2);
        assert_eq!(tag(m[0], "EventId").as_deref(), Some("b"));
        assert_eq!(tag(m[0], "ResourceStatusReason").as_deref(), Some("x & y"));
        assert_eq!(tag(m[1], "ResourceStatusReason"), None);
        assert!(members(xml, "Nope").is_empty());
        assert_eq!(dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world");
        assert_eq!(dechunk("<plain/>"), "<plain/>");
    }
}
