//! The OpenAPI 3 description of the API, served with Swagger UI under `/swagger/` when
//! `server.enable_swagger` is on. The UI's assets are compiled in, so it works without internet.

use serde_json::{json, Value};
use utoipa_swagger_ui::SwaggerUi;

/// Where the UI and the document are served.
pub const UI_PATH: &str = "/swagger";
/// The document's path.
pub const DOC_PATH: &str = "/swagger/openapi.json";

/// The router serving Swagger UI and the document.
pub fn router() -> axum::Router {
    SwaggerUi::new(UI_PATH)
        .external_url_unchecked(DOC_PATH, document())
        .into()
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn text_response(description: &str) -> Value {
    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn query_param(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": kind}})
}

/// One operation: tag, summary, parameters, optional JSON body schema, responses by status.
fn op(
    tag: &str,
    summary: &str,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Vec<(&str, Value)>,
) -> Value {
    let mut op = json!({"tags": [tag], "summary": summary, "parameters": params, "responses": {}});
    if let Some(schema) = body {
        op["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    for (code, response) in responses {
        op["responses"][code] = response;
    }
    op
}

fn instance_op(summary: &str, ok: &str) -> Value {
    op(
        "Instances",
        summary,
        vec![path_param("name", "Instance name")],
        None,
        vec![
            ("200", json_response(ok, schema("Instance"))),
            ("404", error_response("Unknown instance")),
            (
                "409",
                error_response("Maximum number of running instances reached"),
            ),
            ("500", error_response("Failed to start instance")),
        ],
    )
}

fn proxy_op() -> Value {
    op(
        "Instances",
        "Proxy to the instance's llama-server (the prefix is stripped)",
        vec![
            path_param("name", "Instance name"),
            path_param("rest", "Path on llama-server"),
        ],
        None,
        vec![
            (
                "200",
                json!({"description": "llama-server's answer, streamed"}),
            ),
            ("403", error_response("Key not allowed for this instance")),
            ("503", error_response("Instance is not running")),
        ],
    )
}

/// The document.
pub fn document() -> Value {
    let name = || path_param("name", "Instance name: 1-64 of A-Z a-z 0-9 . _ -");
    let instance_body = json!({
        "type": "object",
        "description": "Flat: instance-level keys beside llama.cpp options (snake_case → --kebab-case). \
                        Structured: backend_type + backend_options + instance-level keys.",
        "additionalProperties": true,
        "example": {"model": "/models/gemma.gguf", "ctx_size": 2048, "on_demand_start": true}
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "llamactl",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Runs many llama-server instances behind one REST API and one OpenAI-compatible endpoint."
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "tags": [
            {"name": "System"}, {"name": "Instances"}, {"name": "Keys"}, {"name": "History"}, {"name": "OpenAI"}
        ],
        "paths": {
            "/api/v1/version": {"get": op("System", "llamactl version", vec![], None, vec![("200", text_response("Version:/Commit:/Build Time:"))])},
            "/api/v1/server/help": {"get": op("System", "llama-server --help", vec![], None, vec![("200", text_response("Help text"))])},
            "/api/v1/server/version": {"get": op("System", "llama-server --version", vec![], None, vec![("200", text_response("Version text"))])},
            "/api/v1/server/devices": {"get": op("System", "llama-server --list-devices", vec![], None, vec![("200", text_response("Device list"))])},
            "/api/v1/instances": {"get": op("Instances", "List instances", vec![], None, vec![("200", json_response("All instances", json!({"type": "array", "items": schema("Instance")})))])},
            "/api/v1/instances/{name}": {
                "get": op("Instances", "Get an instance", vec![name()], None, vec![("200", json_response("The instance", schema("Instance"))), ("404", error_response("Unknown instance"))]),
                "post": op("Instances", "Create and start an instance", vec![name()], Some(instance_body.clone()), vec![
                    ("201", json_response("Created (status starting)", schema("Instance"))),
                    ("400", error_response("Invalid name or body")),
                    ("409", error_response("Exists, or a limit is reached")),
                ]),
                "put": op("Instances", "Update an instance (given fields replace; restarts it if running)", vec![name()], Some(instance_body), vec![
                    ("200", json_response("Updated", schema("Instance"))),
                    ("400", error_response("Invalid body")),
                    ("404", error_response("Unknown instance")),
                ]),
                "delete": op("Instances", "Stop and remove an instance", vec![name()], None, vec![("204", json!({"description": "Deleted"})), ("404", error_response("Unknown instance"))]),
            },
            "/api/v1/instances/{name}/start": {"post": instance_op("Start an instance", "Starting")},
            "/api/v1/instances/{name}/stop": {"post": instance_op("Stop an instance", "Stopping")},
            "/api/v1/instances/{name}/restart": {"post": instance_op("Restart an instance", "Restarting")},
            "/api/v1/instances/{name}/logs": {"get": op("Instances", "The instance's log", vec![name(), query_param("lines", "integer", "Last N lines; -1 or absent = all")], None, vec![
                ("200", text_response("Log text")), ("400", error_response("Invalid lines")), ("404", error_response("Unknown instance")),
            ])},
            "/api/v1/instances/{name}/history": {"get": op("History", "The instance's history (also after deletion)", vec![name(), query_param("limit", "integer", "1-1000"), query_param("cursor", "string", "next_cursor of the previous page")], None, vec![
                ("200", json_response("Newest first", schema("HistoryPage"))), ("404", error_response("No event ever recorded")),
            ])},
            "/api/v1/instances/{name}/proxy/{rest}": {"get": proxy_op(), "post": proxy_op()},
            "/api/v1/history": {"get": op("History", "Lifecycle and audit history", vec![
                query_param("instance", "string", "Only this instance"),
                query_param("key", "string", "Only events by or about this key id"),
                query_param("event", "string", "Only this event"),
                query_param("since", "string", "Unix seconds or RFC 3339"),
                query_param("until", "string", "Unix seconds or RFC 3339"),
                query_param("limit", "integer", "1-1000, default 100"),
                query_param("cursor", "string", "next_cursor of the previous page"),
            ], None, vec![("200", json_response("Newest first", schema("HistoryPage"))), ("400", error_response("Invalid filter"))])},
            "/api/v1/auth/keys": {
                "get": op("Keys", "List keys (never their secrets)", vec![], None, vec![("200", json_response("Keys", json!({"type": "array", "items": schema("Key")})))]),
                "post": op("Keys", "Create a key; the token is returned this once", vec![], Some(schema("CreateKey")), vec![
                    ("201", json_response("Created, with `key`", schema("Key"))), ("400", error_response("Invalid request")),
                ]),
            },
            "/api/v1/auth/keys/{id}": {
                "get": op("Keys", "Get a key", vec![path_param("id", "Key id")], None, vec![("200", json_response("The key", schema("Key"))), ("404", error_response("Unknown key"))]),
                "delete": op("Keys", "Revoke a key (takes effect on the next request)", vec![path_param("id", "Key id")], None, vec![("204", json!({"description": "Revoked"})), ("404", error_response("Unknown key"))]),
            },
            "/v1/models": {"get": op("OpenAI", "Instances the key may use, as models", vec![], None, vec![("200", json_response("OpenAI list", json!({"type": "object"})))])},
            "/v1/{endpoint}": {"post": op("OpenAI", "Any POST /v1/* (chat/completions, completions, embeddings, rerank, ...), routed by `model`", vec![path_param("endpoint", "e.g. chat/completions")], Some(json!({"type": "object", "required": ["model"], "properties": {"model": {"type": "string"}}, "additionalProperties": true})), vec![
                ("200", json!({"description": "llama-server's answer, streamed (SSE with stream: true)"})),
                ("400", error_response("Invalid body or missing model")),
                ("403", error_response("Key not allowed for this model")),
                ("404", error_response("Unknown model")),
                ("409", error_response("Running limit reached and nothing can be evicted")),
                ("503", error_response("Not running and on-demand start is off, or the cold start timed out")),
            ])},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Instance": {"type": "object", "required": ["name", "status", "created"], "properties": {
                    "name": {"type": "string"},
                    "status": {"type": "string", "enum": ["stopped", "starting", "running", "stopping", "restarting", "failed"]},
                    "created": {"type": "integer", "description": "Unix seconds"},
                    "port": {"type": "integer", "nullable": true},
                    "pid": {"type": "integer"},
                    "restarts": {"type": "integer"},
                    "last_error": {"type": "string"},
                    "options": {"type": "object", "additionalProperties": true}
                }},
                "CreateKey": {"type": "object", "required": ["name", "kind"], "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string", "enum": ["management", "inference"]},
                    "instances": {"type": "array", "items": {"type": "string"}, "description": "Inference keys only; absent = all"},
                    "expires_at": {"description": "Unix seconds or RFC 3339; absent = never"}
                }},
                "Key": {"type": "object", "additionalProperties": true, "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"}, "kind": {"type": "string"},
                    "key": {"type": "string", "description": "Only in the answer to create"}
                }},
                "HistoryPage": {"type": "object", "properties": {
                    "events": {"type": "array", "items": {"type": "object", "additionalProperties": true}},
                    "next_cursor": {"type": "string", "nullable": true}
                }}
            }
        }
    })
}
