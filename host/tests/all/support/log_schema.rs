//! The log-line JSON Schema that every line the host writes must match.

use serde_json::Value;

/// The log-line schema, compiled.
pub fn log_line_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/log-line.schema.json"
    ))
    .unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("the schema compiles")
}

/// Checks a line against the schema, naming every error and where it is.
pub fn assert_log_line_valid(schema: &jsonschema::Validator, line: &Value) {
    let errors: Vec<String> = schema
        .iter_errors(line)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "line does not match the schema: {errors:?}\n{line}"
    );
}
