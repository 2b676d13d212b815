//! A launch's `props` as a dimension (`props.<key>`): the SQL function that takes one
//! top-level value out of the JSON text stored in `launch_events.props`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The function's name in SQL: `promolens_prop(props, 'plan')`.
pub const PROP_FUNCTION: &str = "promolens_prop";

/// `promolens_prop(props, key)`: the value of `key` at the top of the `props` object, as text
/// (a string as it is, a number or a boolean as written, an object or array as JSON); null
/// when there are no props, no such key, or the value is null.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PropFunction {
    signature: Signature,
}

impl PropFunction {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(PropFunction {
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for PropFunction {
    fn name(&self) -> &str {
        PROP_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [props, key] = args.args.as_slice() else {
            return exec_err!("{PROP_FUNCTION} takes the props and a key");
        };
        let ColumnarValue::Scalar(ScalarValue::Utf8(Some(key))) = key else {
            return exec_err!("{PROP_FUNCTION}: the key must be a text literal");
        };
        let props = cast(&props.to_array(rows)?, &DataType::Utf8)?;
        let props = props.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            let value = if props.is_null(row) {
                None
            } else {
                value_of(props.value(row), key)
            };
            out.append_option(value);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The text of `key`'s value in the JSON object `props` (validated at ingest as an object).
fn value_of(props: &str, key: &str) -> Option<String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(props).ok()?;
    match object.get(key)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::value_of;

    #[test]
    fn top_level_values_as_text() {
        let props =
            r#"{"plan": "gold", "seats": 3, "trial": false, "nothing": null, "n": {"a": 1}}"#;
        assert_eq!(value_of(props, "plan").as_deref(), Some("gold"));
        assert_eq!(value_of(props, "seats").as_deref(), Some("3"));
        assert_eq!(value_of(props, "trial").as_deref(), Some("false"));
        assert_eq!(value_of(props, "nothing"), None);
        assert_eq!(value_of(props, "absent"), None);
        assert_eq!(value_of(props, "n").as_deref(), Some(r#"{"a":1}"#));
    }
}
