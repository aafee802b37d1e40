//! Reading a node's inputs the way both directions need: literal values (plain, or wrapped in
//! `{"__value__": …}`) as opposed to links, and the file fields of Load3D's dict input.
use serde_json::{Map, Value};

/// A refused input: (input name, why).
pub(super) type InputError = (String, String);

/// The fields of the Load3D `image` dict that name files.
pub(super) const DICT_FILE_FIELDS: [&str; 5] = ["image", "mask", "normal", "lineart", "recording"];

/// The literal value of a path input: `None` when absent; links refused; `{"__value__": v}`
/// unwrapped once (as ComfyUI does).
pub(super) fn literal<'v>(
    inputs: &'v Map<String, Value>,
    name: &str,
) -> Result<Option<&'v Value>, InputError> {
    let Some(v) = inputs.get(name) else {
        return Ok(None);
    };
    if v.is_array() {
        // ComfyUI treats every list as a link `[node_id, slot]`; a linked path could be anything.
        return Err((
            name.to_owned(),
            format!("'{name}' must be a literal value, not a link from another node"),
        ));
    }
    Ok(Some(match v.as_object().and_then(|o| o.get("__value__")) {
        Some(inner) => inner,
        None => v,
    }))
}

pub(super) fn literal_str<'v>(
    inputs: &'v Map<String, Value>,
    name: &str,
) -> Result<Option<&'v str>, InputError> {
    match literal(inputs, name)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err((name.to_owned(), format!("'{name}' must be a string"))),
    }
}
