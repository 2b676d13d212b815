//! The OpenAPI 3.1 document of the whole API (`GET /openapi.json`), generated from the handlers'
//! `#[utoipa::path]` attributes, and its page (`GET /docs`: Swagger UI, built into the binary so
//! that it works on a closed network).
//!
//! What every route shares is added here from the tables the server itself runs on, so the
//! document cannot drift from them: each operation's security requirement lists the roles that
//! may call it ([`door`] and [`Role::allows`]), and the errors the common layers answer (401,
//! 403, 404 for an unknown project, 400 and 415 for a bad body, 500, 503) are listed on each.

use axum::http::Method;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

use super::error::ErrorBody;
use crate::access::guard::{Door, door};
use crate::access::roles::Role;

/// The name of the security scheme: `Authorization: Bearer plk_…`.
const BEARER: &str = "api_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "promolens",
        description = "Promotion codes and acquisition analytics for WeChat mini-programs. \
            Send `Authorization: Bearer plk_…` (a key of one role in one project) on every route \
            but the probes, this document and accepting an invitation. Each operation's security \
            requirement lists the roles that may call it. Every error is the JSON object \
            `Error`.",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "events", description = "Launch events from the mini-program"),
        (name = "codes", description = "Authorization and promotion codes (WeChat's A, B and C interfaces)"),
        (name = "analysis", description = "Acquisition and SQL"),
        (name = "settings", description = "Attribution settings: aliases, normalisation, channel rules, lookback window"),
        (name = "access", description = "Keys, invitations and the audit log"),
        (name = "operations", description = "Probes and metrics"),
    ),
    components(schemas(ErrorBody)),
)]
struct ApiDoc;

/// The whole document: the handlers' paths, the security scheme, the common errors.
pub fn document(paths: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(paths);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("plk_<id>_<secret>")
                .description(Some("An API key: one role in one project"))
                .build(),
        ),
    );
    for (route, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                add_what_every_route_shares(operation, &method, route);
            }
        }
    }
    doc
}

fn add_what_every_route_shares(operation: &mut Operation, method: &Method, route: &str) {
    let mut errors = Vec::new();
    match door(method, route) {
        Door::Open => operation.security = Some(vec![SecurityRequirement::default()]),
        Door::Needs(permission) => {
            let roles = Role::ALL
                .into_iter()
                .filter(|role| role.allows(permission))
                .map(Role::name);
            operation.security = Some(vec![SecurityRequirement::new(BEARER, roles)]);
            errors.push((
                "401",
                "No key, or a key that is unknown, revoked or expired",
            ));
            errors.push((
                "403",
                "The key is of another project, or its role may not do this",
            ));
        }
    }
    for parameter in operation.parameters.iter_mut().flatten() {
        let RefOr::T(parameter) = parameter else {
            continue;
        };
        if parameter.parameter_in == ParameterIn::Path && parameter.name == "project" {
            parameter.description = Some("The project's name".into());
            parameter.schema = Some(project_name());
        }
    }
    if route.contains("{project}") {
        errors.push(("400", "A bad parameter or project name (`field` names it)"));
        errors.push(("404", "No such project"));
    }
    let json_body = match &operation.request_body {
        Some(RefOr::T(body)) => body.content.keys().eq(["application/json"]),
        _ => false,
    };
    if json_body {
        errors.push((
            "400",
            "A body that is not JSON or not of this shape (`bad_json`)",
        ));
        errors.push((
            "415",
            "No `Content-Type: application/json` (`unsupported_media_type`)",
        ));
    }
    errors.push(("500", "A failure of the server (the log has the details)"));
    errors.push((
        "503",
        "The request took over 120 s (`timeout`), or the ingest pipeline has stopped",
    ));
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_response(description));
    }
}

/// The rule of `promolens_schemas::event::validate_project_name`.
fn project_name() -> RefOr<utoipa::openapi::schema::Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Za-z0-9_-]{1,64}$"))
        .min_length(Some(1))
        .max_length(Some(64))
        .examples(["demo"])
        .into()
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            )
            .build(),
    )
}
