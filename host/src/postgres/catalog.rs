//! What PostgreSQL clients ask of the catalog when they connect and reflect tables, and
//! DataFusion and datafusion-pg-catalog do not answer: a few functions ([`functions`]), and
//! scalar subqueries nested in a catalog query's columns ([`CatalogSubqueries`]).

use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    Expr, SelectItem, SetExpr, Statement, Value, visit_expressions, visit_expressions_mut,
};
use datafusion_postgres::arrow_pg::datatypes::df;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::portal::Format;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::types::format::FormatOptions;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};

/// The functions, registered in each PostgreSQL session.
pub fn functions() -> Vec<ScalarUDF> {
    let mut functions = vec![version(), JsonBuildObject::udf()];
    functions.extend(constants());
    functions
}

/// `version()` as PostgreSQL words it: clients (SQLAlchemy's dialect among them) read the
/// server's version from its first two words, and DataFusion's own says "Apache DataFusion".
fn version() -> ScalarUDF {
    let text = format!(
        "PostgreSQL 16.0 (promolens {}, read-only, on Apache DataFusion)",
        env!("CARGO_PKG_VERSION")
    );
    create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(text.clone()))))),
    )
}

/// Catalog functions with one answer here, PostgreSQL's for a database like this one:
/// `to_regtype(name)` is null (no extension types: psycopg looks up `hstore` for SQLAlchemy),
/// `pg_get_serial_sequence(table, column)` is null (no sequences), and
/// `pg_collation_is_visible(oid)` is true (the one default collation).
fn constants() -> [ScalarUDF; 3] {
    [
        Constant::udf("to_regtype", 1, ScalarValue::Int32(None)),
        Constant::udf("pg_get_serial_sequence", 2, ScalarValue::Utf8(None)),
        Constant::udf(
            "pg_collation_is_visible",
            1,
            ScalarValue::Boolean(Some(true)),
        ),
    ]
}

/// A function of any arguments with one answer.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    signature: Signature,
    answer: ScalarValue,
}

impl Constant {
    fn udf(name: &'static str, arguments: usize, answer: ScalarValue) -> ScalarUDF {
        ScalarUDF::from(Constant {
            name,
            signature: Signature::any(arguments, Volatility::Immutable),
            answer,
        })
    }
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.answer.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.answer.clone()))
    }
}

/// `json_build_object(key, value, …)`: a JSON object of text values (SQLAlchemy asks for a
/// column's identity and collation this way).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn udf() -> ScalarUDF {
        ScalarUDF::from(JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if !args.args.len().is_multiple_of(2) {
            return exec_err!("json_build_object takes keys and values in pairs");
        }
        let columns = args
            .args
            .iter()
            .map(|a| cast(&a.to_array(rows)?, &DataType::Utf8).map_err(Into::into))
            .collect::<Result<Vec<_>>>()?;
        let mut out = StringBuilder::with_capacity(rows, rows * 32);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in columns.chunks(2) {
                let (keys, values) = (pair[0].as_string::<i32>(), pair[1].as_string::<i32>());
                let key = if keys.is_null(row) {
                    ""
                } else {
                    keys.value(row)
                };
                let value = if values.is_null(row) {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(values.value(row).to_string())
                };
                object.insert(key.to_string(), value);
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Answers catalog queries whose columns hold scalar subqueries nested in expressions
/// (SQLAlchemy's column reflection asks each column's default, identity and collation as
/// `CASE WHEN … THEN (SELECT … WHERE … = pg_attribute.attrelid) END`): DataFusion cannot plan a
/// correlated subquery that is not aggregated. Over promolens' tables every such answer is
/// null (no column has a default, an identity or a collation of its own), so the subqueries
/// are replaced by null, as datafusion-pg-catalog already does for those that stand alone as a
/// column. Only statements that read `pg_catalog` are touched.
#[derive(Debug)]
pub struct CatalogSubqueries;

impl CatalogSubqueries {
    /// The statement with its nested subqueries nulled, when it is a catalog query that has
    /// some.
    fn rewritten(statement: &Statement) -> Option<Statement> {
        let Statement::Query(query) = statement else {
            return None;
        };
        if !statement.to_string().contains("pg_catalog") {
            return None;
        }
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        let mut select = select.clone();
        let mut changed = false;
        for item in &mut select.projection {
            let expr = match item {
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
                _ => continue,
            };
            if matches!(expr, Expr::Subquery(_)) {
                continue;
            }
            let _ = visit_expressions_mut(expr, |inner| {
                if let Expr::Subquery(subquery) = inner {
                    *inner = null_keeping_placeholders(subquery);
                    changed = true;
                }
                ControlFlow::<()>::Continue(())
            });
        }
        if !changed {
            return None;
        }
        let mut query = query.clone();
        query.body = Box::new(SetExpr::Select(select));
        Some(Statement::Query(query))
    }
}

/// Null, as an expression that still names the placeholders of `subquery`: the client binds a
/// value to every placeholder it sent, by position, so none may vanish from the statement.
fn null_keeping_placeholders(subquery: &datafusion::sql::sqlparser::ast::Query) -> Expr {
    let mut placeholders = Vec::new();
    let _ = visit_expressions(subquery, |expr| {
        if let Expr::Value(value) = expr
            && matches!(value.value, Value::Placeholder(_))
        {
            placeholders.push(expr.clone());
        }
        ControlFlow::<()>::Continue(())
    });
    let null = Expr::Value(Value::Null.with_empty_span());
    if placeholders.is_empty() {
        return null;
    }
    // CASE WHEN $1 IS NULL OR $2 IS NULL … THEN NULL END: null whatever the values.
    let condition = placeholders
        .into_iter()
        .map(|p| Expr::IsNull(Box::new(p)))
        .reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: datafusion::sql::sqlparser::ast::BinaryOperator::Or,
            right: Box::new(b),
        })
        .unwrap_or_else(|| null.clone());
    Expr::Case {
        case_token: AttachedToken::empty(),
        end_token: AttachedToken::empty(),
        operand: None,
        conditions: vec![datafusion::sql::sqlparser::ast::CaseWhen {
            condition,
            result: null,
        }],
        else_result: None,
    }
}

#[async_trait]
impl QueryHook for CatalogSubqueries {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let rewritten = Self::rewritten(statement)?;
        let run = async {
            let frame = session_context
                .sql(&rewritten.to_string())
                .await
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let answer = df::encode_dataframe(frame, &Format::UnifiedText, Some(options)).await?;
            Ok(Response::Query(answer))
        };
        Some(run.await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let rewritten = Self::rewritten(statement)?;
        let planned = session_context
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                rewritten,
            )))
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)));
        Some(planned)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}
