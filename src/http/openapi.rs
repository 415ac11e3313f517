//! The OpenAPI document, served with Swagger UI under `/swagger/` when `server.enable_swagger` is on.
//!
//! It is generated, not written: each handler's `#[utoipa::path]` annotation is registered on the
//! router and in the document in one step (`super::router`), the schemas are derived from the types
//! the handlers take and give, and the rules utoipa's model cannot state (an instance body's option
//! names and values, the instance name's pattern, this server's port range) are built here from the
//! same constants the validation uses. The instance proxy and the `/v1` inference routes are served
//! outside axum's routing table (see `ProxyFirst` and `POST /v1/{*rest}`), so they are described by
//! the documentation-only operations below. The UI's assets are compiled in.

use crate::backends::command::GPU_SELECTION;
use crate::config::Config;
use crate::definitions::environment::INSTANCE_ALLOWED;
use crate::definitions::name::MAX_NAME_LEN;
use crate::definitions::options::{canonical, DOWNLOAD_TARGETS, REFUSED, RESERVED, SLOT_SAVE_PATH};
use serde_json::{json, Value};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

/// Where the UI and the document are served.
pub const UI_PATH: &str = "/swagger";
/// The document's path.
pub const DOC_PATH: &str = "/swagger/openapi.json";

/// An instance name, as `crate::definitions::name::validate` accepts it.
const NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

/// An entry of a key's instance list, as `crate::auth::policy::InstancePattern::parse` accepts it.
const PATTERN_PATTERN: &str = "^[A-Za-z0-9._*-]{1,64}$";

/// The router serving Swagger UI and `document`.
pub fn router(document: Value) -> axum::Router {
    SwaggerUi::new(UI_PATH)
        .external_url_unchecked(DOC_PATH, document)
        .into()
}

/// The `{"error": "..."}` body of every refusal.
#[derive(Debug, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    #[allow(dead_code)]
    error: String,
}

/// The body of `POST` and `PUT /api/v1/instances/{name}`; its schema is built by
/// [`instance_body`], from the validation's own rules.
#[derive(Debug)]
pub struct InstanceBody;

impl PartialSchema for InstanceBody {
    fn schema() -> RefOr<Schema> {
        // Replaced in `document`: utoipa's model has no `not` or `propertyNames` patterns.
        Object::new().into()
    }
}

impl ToSchema for InstanceBody {}

/// The body of a `/v1` inference request: OpenAI's, routed by `model`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct InferenceBody {
    /// The instance to use (its name, as `/v1/models` lists it).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    model: String,
}

/// `POST /v1/chat/completions`, served by `POST /v1/{*rest}`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "OpenAI",
    request_body = InferenceBody,
    responses(
        (status = 200, description = "llama-server's answer; server-sent events with `\"stream\": true`"),
        (status = "default", description = "llama-server's own answer, passed through"),
        (status = 400, description = "Not JSON, or no `model`", body = ErrorBody),
        (status = 403, description = "This key may not use this instance", body = ErrorBody),
        (status = 404, description = "No instance of this name", body = ErrorBody),
        (status = 409, description = "max_running_instances is reached and nothing may be evicted (enable_lru_eviction off, can_evict false), or no instance could be freed within on_demand_start_timeout", body = ErrorBody),
        (status = 500, description = "The instance could not be started: the reason for an operator, a reference to it in llamactl's log for an inference key", body = ErrorBody),
        (status = 503, description = "Not running and not started on demand (on-demand start off, or stopped by an operator), or its cold start timed out, or it went down (hung or crashed) while answering, or its queue (max_concurrent) is full or was waited in past queue_timeout (with Retry-After)", body = ErrorBody),
        (status = 504, description = "The backend sent nothing for instances.stream_idle_timeout before its answer began", body = ErrorBody)))]
#[allow(dead_code)]
async fn chat_completions() {}

/// `POST /v1/completions`, served by `POST /v1/{*rest}`.
#[utoipa::path(post, path = "/v1/completions", tag = "OpenAI", request_body = InferenceBody,
    responses((status = 200, description = "llama-server's answer"),
        (status = "default", description = "llama-server's own answer, passed through"),
        (status = 400, description = "Not JSON, or no `model`"),
        (status = 403, description = "This key may not use this instance"),
        (status = 404, description = "No instance of this name"),
        (status = 409, description = "max_running_instances is reached and nothing may be evicted (enable_lru_eviction off, can_evict false), or no instance could be freed within on_demand_start_timeout"),
        (status = 500, description = "The instance could not be started: the reason for an operator, a reference to it in llamactl's log for an inference key"),
        (status = 503, description = "Not running and not started on demand (on-demand start off, or stopped by an operator), or its cold start timed out, or it went down (hung or crashed) while answering, or its queue (max_concurrent) is full or was waited in past queue_timeout (with Retry-After)"),
        (status = 504, description = "The backend sent nothing for instances.stream_idle_timeout before its answer began")))]
#[allow(dead_code)]
async fn completions() {}

/// `POST /v1/embeddings`, served by `POST /v1/{*rest}`.
#[utoipa::path(post, path = "/v1/embeddings", tag = "OpenAI", request_body = InferenceBody,
    responses((status = 200, description = "llama-server's answer"),
        (status = "default", description = "llama-server's own answer, passed through"),
        (status = 400, description = "Not JSON, or no `model`"),
        (status = 403, description = "This key may not use this instance"),
        (status = 404, description = "No instance of this name"),
        (status = 409, description = "max_running_instances is reached and nothing may be evicted (enable_lru_eviction off, can_evict false), or no instance could be freed within on_demand_start_timeout"),
        (status = 500, description = "The instance could not be started: the reason for an operator, a reference to it in llamactl's log for an inference key"),
        (status = 503, description = "Not running and not started on demand (on-demand start off, or stopped by an operator), or its cold start timed out, or it went down (hung or crashed) while answering, or its queue (max_concurrent) is full or was waited in past queue_timeout (with Retry-After)"),
        (status = 504, description = "The backend sent nothing for instances.stream_idle_timeout before its answer began")))]
#[allow(dead_code)]
async fn embeddings() {}

/// `POST /v1/rerank`, served by `POST /v1/{*rest}`.
#[utoipa::path(post, path = "/v1/rerank", tag = "OpenAI", request_body = InferenceBody,
    responses((status = 200, description = "llama-server's answer"),
        (status = "default", description = "llama-server's own answer, passed through"),
        (status = 400, description = "Not JSON, or no `model`"),
        (status = 403, description = "This key may not use this instance"),
        (status = 404, description = "No instance of this name"),
        (status = 409, description = "max_running_instances is reached and nothing may be evicted (enable_lru_eviction off, can_evict false), or no instance could be freed within on_demand_start_timeout"),
        (status = 500, description = "The instance could not be started: the reason for an operator, a reference to it in llamactl's log for an inference key"),
        (status = 503, description = "Not running and not started on demand (on-demand start off, or stopped by an operator), or its cold start timed out, or it went down (hung or crashed) while answering, or its queue (max_concurrent) is full or was waited in past queue_timeout (with Retry-After)"),
        (status = 504, description = "The backend sent nothing for instances.stream_idle_timeout before its answer began")))]
#[allow(dead_code)]
async fn rerank() {}

/// `POST /v1/reranking`, served by `POST /v1/{*rest}`.
#[utoipa::path(post, path = "/v1/reranking", tag = "OpenAI", request_body = InferenceBody,
    responses((status = 200, description = "llama-server's answer"),
        (status = "default", description = "llama-server's own answer, passed through"),
        (status = 400, description = "Not JSON, or no `model`"),
        (status = 403, description = "This key may not use this instance"),
        (status = 404, description = "No instance of this name"),
        (status = 409, description = "max_running_instances is reached and nothing may be evicted (enable_lru_eviction off, can_evict false), or no instance could be freed within on_demand_start_timeout"),
        (status = 500, description = "The instance could not be started: the reason for an operator, a reference to it in llamactl's log for an inference key"),
        (status = 503, description = "Not running and not started on demand (on-demand start off, or stopped by an operator), or its cold start timed out, or it went down (hung or crashed) while answering, or its queue (max_concurrent) is full or was waited in past queue_timeout (with Retry-After)"),
        (status = 504, description = "The backend sent nothing for instances.stream_idle_timeout before its answer began")))]
#[allow(dead_code)]
async fn reranking() {}

/// The instance proxy, served by `ProxyFirst` before the router (`HEAD` too, as every `GET`).
#[utoipa::path(method(get, post), path = "/api/v1/instances/{name}/proxy/{rest}",
    tag = "Instances",
    params(("name" = String, Path, description = "Instance name"),
        ("rest" = String, Path, description = "The path on llama-server (the prefix is stripped)")),
    responses(
        (status = 200, description = "llama-server's answer, streamed"),
        (status = "default", description = "llama-server's own answer, passed through"),
        (status = 400, description = "Invalid instance name", body = ErrorBody),
        (status = 403, description = "This key may not use this instance, or (an inference key) this llama-server endpoint", body = ErrorBody),
        (status = 503, description = "The instance is not running, or went down (hung or crashed) while answering, or (an inference request: any but GET and HEAD) its queue (max_concurrent) is full or was waited in past queue_timeout (with Retry-After)", body = ErrorBody),
        (status = 504, description = "The backend sent nothing for instances.stream_idle_timeout before its answer began", body = ErrorBody)))]
#[allow(dead_code)]
async fn proxy() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "llamactl",
        description = "Runs many llama-server instances behind one REST API (`/api/v1`, management keys) and \
                       one OpenAI-compatible API (`/v1`, inference or management keys). Every refusal is \
                       `{\"error\": \"...\"}`. A client that fails authentication `auth.failed_auth_burst` \
                       times is answered 429 with `Retry-After` until it may try again."),
    tags((name = "System"), (name = "Instances"), (name = "History"), (name = "Keys"), (name = "Activity"), (name = "OpenAI")),
    paths(proxy, chat_completions, completions, embeddings, rerank, reranking),
    components(schemas(ErrorBody)),
    security(("bearer" = []), ("apiKey" = [])),
    modifiers(&Security)
)]
struct Described;

/// Bearer or `X-API-Key`: either carries a management or an inference key.
struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut Document) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "`X-API-Key: <key>`",
            ))),
        );
    }
}

/// The document for the operations the router registered (`routes`), as this server (`cfg`) runs.
pub fn document(routes: Document, cfg: &Config) -> Value {
    let mut api = Described::openapi();
    api.merge(routes);
    api.info.version = env!("CARGO_PKG_VERSION").to_string();
    for (path, item) in api.paths.paths.iter_mut() {
        // `/metrics` takes the management API's keys (and the metrics keys).
        let management = path.starts_with("/api/") || path == "/metrics";
        // llama-server's answers pass through these unchanged, whatever their status and type.
        let passthrough =
            path.contains("/proxy/") || (path.starts_with("/v1/") && path != "/v1/models");
        for (method, op) in [
            ("GET", &mut item.get),
            ("POST", &mut item.post),
            ("PUT", &mut item.put),
            ("DELETE", &mut item.delete),
            ("PATCH", &mut item.patch),
        ] {
            if let Some(op) = op {
                add_common_responses(op, method, management, cfg);
                if passthrough {
                    for (status, response) in op.responses.responses.iter_mut() {
                        if let (false, RefOr::T(response)) =
                            (status == "401" || status == "429", response)
                        {
                            response.content.clear();
                        }
                    }
                }
            }
        }
    }
    let mut doc = serde_json::to_value(&api).unwrap_or_else(|e| {
        // Serialising plain data cannot fail; if it ever did, an empty document says so.
        tracing::error!(error = %e, "OpenAPI document could not be serialised");
        json!({})
    });
    refine(&mut doc, cfg);
    doc
}

/// The answers every route of a kind can give, whatever its handler does: the key checks, the
/// browser checks and the body's transport.
fn add_common_responses(op: &mut Operation, method: &str, management: bool, cfg: &Config) {
    let error = || {
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "Error",
            ))))
            .build()
    };
    let mut add = |status: &str, description: &str| {
        if !op.responses.responses.contains_key(status) {
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", error());
            op.responses
                .responses
                .insert(status.to_string(), response.build().into());
        }
    };
    let required = if management {
        cfg.auth.require_management_auth
    } else {
        cfg.auth.require_inference_auth
    };
    if required {
        add("401", "No key, or an unknown, expired or revoked one");
        add(
            "403",
            if management {
                "A key that is not a management key"
            } else {
                "This key may not use this instance"
            },
        );
        let retry = HeaderBuilder::new()
            .schema(Some(
                Object::builder()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            ))
            .description(Some("Seconds until the client may try again"))
            .build();
        let response = ResponseBuilder::new()
            .description(
                "Too many failed authentications from this client (auth.failed_auth_burst); \
                 try again after Retry-After seconds",
            )
            .content("application/json", error())
            .header("Retry-After", retry);
        op.responses
            .responses
            .entry("429".to_string())
            .or_insert_with(|| response.build().into());
    } else {
        op.security = Some(Vec::new());
    }
    // Management changes are written to the database before they are answered: a lock held by
    // another process beyond the busy timeout answers 503 with Retry-After.
    let writes = management && method != "GET";
    if writes {
        let retry = HeaderBuilder::new()
            .schema(Some(
                Object::builder()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            ))
            .description(Some("Seconds until the client may try again"))
            .build();
        let busy = ResponseBuilder::new()
            .description(
                "The database is locked by another process for longer than the busy timeout; \
                 nothing was changed, try again after Retry-After seconds",
            )
            .content("application/json", error())
            .header("Retry-After", retry);
        op.responses
            .responses
            .entry("503".to_string())
            .or_insert_with(|| busy.build().into());
    }
    let mut add = |status: &str, description: &str| {
        if !op.responses.responses.contains_key(status) {
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", error());
            op.responses
                .responses
                .insert(status.to_string(), response.build().into());
        }
    };
    if writes {
        add(
            "507",
            "No space left on the device holding the database or data directory (named in the \
             message); nothing was changed",
        );
    }
    if method == "POST" {
        add(
            "415",
            "A form-like POST (no JSON content type, no key, no X-Requested-With), or a JSON body \
             sent with another content type",
        );
    }
    if op.request_body.is_some() {
        add("400", "The body is not valid JSON of this shape");
        add(
            "408",
            "The body stopped arriving (server.request_body_timeout)",
        );
        add("413", "The body is larger than the route accepts");
        add("415", "The body is not sent as application/json");
    }
}

/// What utoipa's model cannot say: the instance name's pattern and the instance body's rules.
fn refine(doc: &mut Value, cfg: &Config) {
    let name = json!({
        "type": "string",
        "pattern": NAME_PATTERN,
        "minLength": 1,
        "maxLength": MAX_NAME_LEN,
        "not": {"enum": [".", ".."]},
    });
    // `crate::timestamp::parse`: Unix seconds or RFC 3339.
    let time = json!({"anyOf": [
        {"type": "string", "pattern": "^[0-9]{1,11}$"},
        {"type": "string", "format": "date-time"},
    ]});
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut() {
                let params = op.get_mut("parameters").and_then(Value::as_array_mut);
                for param in params.into_iter().flatten() {
                    let place = (param["name"].clone(), param["in"].clone());
                    match (place.0.as_str(), place.1.as_str()) {
                        (Some("name"), Some("path")) | (Some("instance"), Some("query")) => {
                            param["schema"] = name.clone()
                        }
                        (Some("since" | "until"), Some("query")) => param["schema"] = time.clone(),
                        _ => {}
                    }
                }
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("InstanceBody".into(), instance_body(cfg));
        // A key's instance list: names, or patterns where `*` matches any characters.
        let entry = json!({"type": "string", "pattern": PATTERN_PATTERN});
        for body in ["CreateKey", "UpdateKey"] {
            if let Some(instances) = schemas
                .get_mut(body)
                .and_then(|k| k.pointer_mut("/properties/instances"))
            {
                // An optional list: `null` or at least one name or pattern.
                *instances = json!({
                    "anyOf": [{"type": "array", "items": entry, "minItems": 1}, {"type": "null"}],
                    "description": "Instance names or patterns ('*' matches any characters) an \
                        inference key is limited to; null = all. Not for management keys.",
                });
            }
        }
        if let Some(create) = schemas.get_mut("CreateKey") {
            create["anyOf"] = json!([
                {"properties": {"kind": {"const": "inference"}}},
                {"properties": {"instances": {"type": "null"}, "routes": {"type": "null"}}},
            ]);
        }
        if let Some(expires) = schemas
            .get_mut("CreateKey")
            .and_then(|k| k.pointer_mut("/properties/expires_at"))
        {
            let last_second = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp();
            // It must lie in the future: the document asks for one past 2100 so that what it
            // calls valid stays valid (the server takes any future time).
            *expires = json!({
                "anyOf": [
                    {"type": "integer", "minimum": 4_102_444_800_i64, "maximum": last_second},
                    {"type": "string", "pattern": r"^2[1-9][0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$"},
                    {"type": "null"},
                ],
                "description": "When the key stops working: Unix seconds or RFC 3339, in the future; absent or null = never",
            });
        }
    }
}

/// A pattern matching `name` as llama-server matches option names: any case, `-` or `_`.
fn option_name_pattern(name: &str) -> String {
    canonical(name)
        .chars()
        .map(|c| match c {
            '_' => "[-_]".to_string(),
            c if c.is_ascii_alphabetic() => {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            }
            c => c.to_string(),
        })
        .collect()
}

/// One argument's value: never read as a flag, never holding a NUL.
fn option_value() -> Value {
    let text = json!({"type": "string", "pattern": r"^([^-\u0000][^\u0000]*)?$"});
    json!({"anyOf": [
        text.clone(),
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null", "description": "absent (in an update: removes the option)"},
        {"type": "array", "items": {"anyOf": [text, {"type": "number"}]}},
    ]})
}

/// The body of a create or update, flat (options beside instance keys) or structured
/// (`backend_type`, `backend_options`), as `crate::definitions::spec::SpecPatch::from_body` and the
/// checks in `crate::instances` accept it.
fn instance_body(cfg: &Config) -> Value {
    let nullable = |t: Value| json!({"anyOf": [t, {"type": "null"}]});
    let [lo, hi] = cfg.instances.port_range;
    let allowed: Vec<String> = GPU_SELECTION
        .iter()
        .chain(INSTANCE_ALLOWED)
        .map(|p| match p.strip_suffix('*') {
            Some(prefix) => format!("^{prefix}[A-Za-z0-9_]*$"),
            None => format!("^{p}$"),
        })
        .collect();
    let operator_set: Vec<&String> = cfg.backends.llama_cpp.environment.keys().collect();
    let variable = json!({
        "anyOf": allowed.iter().map(|p| json!({"pattern": p})).collect::<Vec<_>>(),
        "not": {"anyOf": [
            {"pattern": "^GGML_.*(PATH|DIR|FILE|LIB)"},
            {"enum": operator_set},
        ]},
    });
    let fields = json!({
        "auto_restart": nullable(json!({"type": "boolean"})),
        "max_restarts": nullable(json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})),
        "restart_delay": nullable(json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})),
        "on_demand_start": nullable(json!({"type": "boolean"})),
        "on_demand_after_stop": nullable(json!({"type": "boolean"})),
        "idle_timeout": nullable(json!({"type": "number", "minimum": 0, "description": "Minutes; 0 = never"})),
        "environment": nullable(json!({
            "type": "object",
            "propertyNames": variable,
            "additionalProperties": {"type": "string", "pattern": r"^[^\u0000]*$"},
        })),
        "port": nullable(json!({"type": "integer", "minimum": lo, "maximum": hi})),
        "max_concurrent": nullable(json!({"type": "integer", "minimum": 1, "maximum": 65536, "description": "Requests answered at once; more wait in the instance's queue"})),
        "max_queue": nullable(json!({"type": "integer", "minimum": 0, "maximum": 1000000, "description": "Requests that may wait beyond max_concurrent; more get 503 with Retry-After"})),
        "queue_timeout": nullable(json!({"type": "integer", "minimum": 1, "maximum": 86400, "description": "Seconds a request may wait in the queue (default: instances.on_demand_start_timeout); then 503 with Retry-After"})),
    });
    let refused: Vec<String> = RESERVED
        .iter()
        .copied()
        .chain(REFUSED.iter().map(|(name, _)| *name))
        .chain([SLOT_SAVE_PATH])
        .map(option_name_pattern)
        .collect();
    let option_name = |exclude: Value| {
        json!({
            "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
            "not": {"anyOf": [
                {"pattern": format!("^({})$", refused.join("|"))},
                {"enum": exclude},
            ]},
        })
    };
    let slot_path = json!({
        "type": ["string", "null"],
        "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$",
        "description": "A directory inside the instance's own slot directory",
    });
    let pairs: Vec<Value> = DOWNLOAD_TARGETS
        .iter()
        // Both given, and neither `null` (which means "absent").
        .map(|(url, target)| {
            let given = json!({"not": {"type": "null"}});
            json!({"required": [url, target], "properties": {*url: given, *target: given}})
        })
        .collect();
    // `names_not`: names that would make a flat body a structured one.
    let options = |extra: Value, names_not: Value| {
        let mut properties = json!({ SLOT_SAVE_PATH: slot_path });
        if let (Some(p), Some(e)) = (properties.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        json!({
            "type": "object",
            "properties": properties,
            "propertyNames": option_name(names_not),
            "additionalProperties": option_value(),
            "not": {"anyOf": pairs},
        })
    };
    let mut flat = options(fields.clone(), json!(["backend_type", "backend_options"]));
    flat["description"] = json!(
        "Flat: instance-level keys beside llama.cpp options (snake_case, passed as --kebab-case flags)"
    );
    flat["example"] =
        json!({"model": "/models/gemma.gguf", "ctx_size": 2048, "on_demand_start": true});
    let mut structured_props = fields;
    structured_props["backend_type"] =
        json!({"type": "string", "enum": ["llama_cpp", "llama-cpp", "llamacpp"]});
    structured_props["backend_options"] = nullable(options(json!({}), json!([])));
    let structured = json!({
        "description": "Structured: backend_type and backend_options beside the instance-level keys",
        "type": "object",
        "properties": structured_props,
        "additionalProperties": false,
        "anyOf": [{"required": ["backend_type"]}, {"required": ["backend_options"]}],
    });
    json!({"anyOf": [flat, structured]})
}
