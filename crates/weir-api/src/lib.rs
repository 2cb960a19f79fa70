//! Weir's AWS Query API endpoint. Requests (`POST` form bodies or `GET` query strings) are
//! dispatched by `Action` and `Version`; parameters in AWS's `X.member.N.Y` form are nested into
//! the JSON shape that `weir_model::shape` converts, so the API and templates share one
//! conversion. Every change goes through the durable [`Store`] and then, as a new state, to the
//! data plane. Responses are XML in the service's namespace; errors are
//! `ErrorResponse/Error/{Type,Code,Message}` with a `RequestId`.
//!
//! Implemented now: the ELBv2 (2015-12-01) operations the data plane supports, CloudWatch
//! (2010-08-01) metrics and alarms, the EC2 calls tools need, Auto Scaling (2011-01-01)
//! groups, and CloudFormation (2010-05-15) stacks and change sets (see `docs/api.md`). Requests are verified with SigV4 ([`sigv4`]) unless authentication is off.
#![forbid(unsafe_code)]

mod autoscaling;
mod cloudformation;
mod cloudwatch;
mod ec2;
mod elbv2;
pub mod sigv4;

pub use autoscaling::Scaling;
pub mod xml;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Mutex;
use weir_dataplane::Dataplane;
use weir_model::shape::{get_str, nest_query_params};
use weir_model::ModelError;
use weir_store::{Store, StoreError};

/// Shared state of the API server.
pub struct Api {
    /// The durable state. Held across the data-plane update so commands apply in order.
    pub store: Mutex<Store>,
    /// The data plane that serves the state.
    pub dataplane: Arc<Dataplane>,
    /// Accepted access keys; `None` serves without authentication.
    pub auth: Option<sigv4::Credentials>,
    /// Metrics served by the CloudWatch API and `/metrics`.
    pub metrics: Arc<weir_telemetry::Registry>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// Applies the command `name` through the store and hands the new committed state to the
    /// data plane. The store lock is held across both, so commands reach the data plane in the
    /// order they were committed.
    pub(crate) async fn mutate<T>(
        &self,
        name: &str,
        detail: &str,
        change: impl FnOnce(&mut weir_model::State) -> Result<T, ModelError>,
    ) -> Result<T, ApiError> {
        let mut store = self.store.lock().await;
        let out = store.apply(name, detail, now_ms(), change)?;
        if let Err(e) = self.dataplane.apply(store.state()).await {
            tracing::error!(error = %e, "the data plane could not apply the new state");
        }
        Ok(out)
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An API error as AWS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `Sender` (the caller's fault) or `Receiver`.
    pub kind: &'static str,
    /// AWS error code.
    pub code: String,
    /// Message.
    pub message: String,
}

impl ApiError {
    /// A `ValidationError` (400, Sender).
    pub fn validation(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            kind: "Sender",
            code: "ValidationError".into(),
            message: message.into(),
        }
    }
    /// A required parameter is missing.
    pub fn missing(name: &str) -> Self {
        Self::validation(format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"))
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        Self {
            status: e.code.http_status(),
            kind: "Sender",
            code: e.code.as_str().into(),
            message: e.message,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => m.into(),
            other => {
                tracing::error!(error = %other, "state store failure");
                Self {
                    status: 500,
                    kind: "Receiver",
                    code: "InternalFailure".into(),
                    message: "The request processing has failed because of an unknown error."
                        .into(),
                }
            }
        }
    }
}

const ELBV2_NS: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";
const EC2_NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// The router: every path, GET or POST, is the Query endpoint.
pub fn router(api: Arc<Api>) -> Router {
    Router::new().fallback(handle).with_state(api)
}

/// Serves the API on `addr` until the task is dropped. Returns the bound address.
pub async fn serve(
    api: Arc<Api>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let (listener, registration) = weir_sockets::tcp_listener(addr)?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _registration = registration;
        if let Err(e) = axum::serve(listener, router(api)).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    Ok((local, task))
}

async fn handle(
    AxState(api): AxState<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    if method == Method::GET && uri.path() == "/metrics" {
        // Prometheus scrapes are not signed; the endpoint shows metrics only.
        return (
            [("content-type", "text/plain; version=0.0.4".to_string())],
            api.metrics.prometheus(),
        )
            .into_response();
    }
    if let Some(creds) = &api.auth {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Err(e) = sigv4::verify(
            creds,
            method.as_str(),
            uri.path(),
            uri.query().unwrap_or(""),
            &headers,
            &body,
            now,
        ) {
            let err =
                ApiError { status: 403, kind: "Sender", code: e.code.into(), message: e.message };
            return error_response(&err, &request_id);
        }
    }
    let rpc_prefix = format!("/service/{}/operation/", cloudwatch::RPC_SERVICE);
    if let Some(op) = uri.path().strip_prefix(&rpc_prefix) {
        return cloudwatch_rpc(&api, op, &body, &request_id, Wire::Cbor).await;
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(op) = target.strip_prefix(cloudwatch::RPC_SERVICE).and_then(|t| t.strip_prefix('.'))
    {
        return cloudwatch_rpc(&api, op, &body, &request_id, Wire::Json).await;
    }
    let mut pairs: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    pairs.extend(form_urlencoded::parse(&body).into_owned());
    let params = nest_query_params(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let action = get_str(&params, "Action").unwrap_or_default();
    let version = get_str(&params, "Version").unwrap_or_default();
    if version == "2016-11-15" {
        return match ec2::dispatch(&api, &action, &params).await {
            Ok(body) => {
                let xml = format!("<{action}Response xmlns=\"{EC2_NS}\"><requestId>{request_id}</requestId>{body}</{action}Response>");
                ([("content-type", "text/xml".to_string()), ("x-amzn-requestid", request_id)], xml)
                    .into_response()
            }
            Err(e) => {
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
                    xml::escape(&e.code),
                    xml::escape(&e.message)
                );
                let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
                (status, [("content-type", "text/xml".to_string())], xml).into_response()
            }
        };
    }
    let result = match version.as_str() {
        "2015-12-01" => elbv2::dispatch(&api, &action, &params).await.map(|body| (ELBV2_NS, body)),
        "2011-01-01" => {
            autoscaling::dispatch(&api, &action, &params).await.map(|body| (autoscaling::NS, body))
        }
        "2010-05-15" => cloudformation::dispatch(&api, &action, &params)
            .await
            .map(|body| (cloudformation::NS, body)),
        "2010-08-01" => cloudwatch::dispatch(&api, &action, &params).await.map(|v| {
            let mut body = String::new();
            cloudwatch::to_xml(&v, &mut body);
            (cloudwatch::NS, body)
        }),
        _ => Err(ApiError {
            status: 400,
            kind: "Sender",
            code: "InvalidAction".into(),
            message: format!("Could not find operation {action} for version {version}"),
        }),
    };
    match result {
        Ok((ns, body)) => {
            let xml = format!(
                "<{action}Response xmlns=\"{ns}\"><{action}Result>{body}</{action}Result><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
            );
            ([("content-type", "text/xml".to_string()), ("x-amzn-requestid", request_id)], xml)
                .into_response()
        }
        Err(e) => {
            tracing::debug!(action, code = %e.code, message = %e.message, "API error");
            error_response(&e, &request_id)
        }
    }
}

/// The body encodings of CloudWatch's RPC protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// AWS JSON 1.0.
    Json,
    /// Smithy RPC v2 CBOR.
    Cbor,
}

/// Decodes the body of a CloudWatch RPC call (Smithy RPC v2 CBOR when `cbor`, else AWS JSON 1.0)
/// into the parameters the handlers read; an empty body is an empty map. Malformed input is a
/// `SerializationException`.
pub fn decode_rpc_body(body: &[u8], cbor: bool) -> Result<serde_json::Value, ApiError> {
    let bad = |what: &str, e: String| ApiError {
        status: 400,
        kind: "Sender",
        code: "SerializationException".into(),
        message: format!("The request body is not valid {what}: {e}"),
    };
    if body.is_empty() {
        Ok(serde_json::Value::Object(Default::default()))
    } else if cbor {
        ciborium::from_reader::<ciborium::Value, _>(body)
            .map(cloudwatch::from_cbor)
            .map_err(|e| bad("CBOR", e.to_string()))
    } else {
        serde_json::from_slice(body).map_err(|e| bad("JSON", e.to_string()))
    }
}

/// A CloudWatch call over AWS JSON 1.0 or Smithy RPC v2 CBOR.
async fn cloudwatch_rpc(
    api: &Api,
    op: &str,
    body: &[u8],
    request_id: &str,
    wire: Wire,
) -> Response {
    let result = match decode_rpc_body(body, wire == Wire::Cbor) {
        Ok(p) => cloudwatch::dispatch(api, op, &p).await,
        Err(e) => Err(e),
    };
    let (status, value, error) = match result {
        Ok(v) => (StatusCode::OK, v, None),
        Err(e) => {
            let v = cloudwatch::Val::Map(vec![
                ("__type", cloudwatch::Val::Str(format!("com.amazonaws.cloudwatch#{}", e.code))),
                ("message", cloudwatch::Val::Str(e.message.clone())),
            ]);
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, v, Some(format!("{};{}", e.code, e.kind)))
        }
    };
    let (bytes, content_type) = match wire {
        Wire::Cbor => {
            let mut out = Vec::new();
            if ciborium::into_writer(&cloudwatch::to_cbor(&value), &mut out).is_err() {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            (out, "application/cbor")
        }
        Wire::Json => (
            serde_json::to_vec(&cloudwatch::to_json(&value)).unwrap_or_default(),
            "application/x-amz-json-1.0",
        ),
    };
    let mut resp = (status, bytes).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", axum::http::HeaderValue::from_static(content_type));
    if wire == Wire::Cbor {
        h.insert("smithy-protocol", axum::http::HeaderValue::from_static("rpc-v2-cbor"));
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(q) = error.and_then(|q| axum::http::HeaderValue::from_str(&q).ok()) {
        h.insert("x-amzn-query-error", q);
    }
    resp
}

fn error_response(e: &ApiError, request_id: &str) -> Response {
    let xml = format!(
        "<ErrorResponse xmlns=\"{ELBV2_NS}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        e.kind,
        xml::escape(&e.code),
        xml::escape(&e.message)
    );
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [("content-type", "text/xml".to_string()), ("x-amzn-requestid", request_id.to_string())],
        xml,
    )
        .into_response()
}
