//! A2A Agent Card validation: the fields the A2A spec defines, checked with one error per
//! field that names its JSON path (`skills[2].tags[0]`), so a caller can fix its card from
//! the message alone. Unknown fields are kept: the spec grows and cards carry extensions.

use serde_json::{Map, Value};

/// Registered cards are at most this many bytes of JSON.
pub const MAX_CARD_BYTES: usize = 64 * 1024;
const MAX_NAME: usize = 256;
const MAX_TEXT: usize = 8 * 1024;

/// A card field that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CardError {
    /// JSON path of the offending field (`name`, `skills[0].id`, `` for the whole card).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> CardError {
    CardError {
        path: path.into(),
        message: message.into(),
    }
}

/// Checks a card's shape; returns the card's `name` on success.
pub fn validate(card: &Value) -> Result<String, CardError> {
    let obj = card
        .as_object()
        .ok_or_else(|| err("", "an agent card is a JSON object"))?;
    let name = text(obj, "", "name", MAX_NAME, true)?.unwrap_or_default();
    if name.trim().is_empty() {
        return Err(err("name", "must not be empty"));
    }
    text(obj, "", "description", MAX_TEXT, true)?;
    text(obj, "", "version", MAX_NAME, true)?;
    text(obj, "", "protocolVersion", MAX_NAME, true)?;
    url(obj, "", "url", true)?;
    text(obj, "", "preferredTransport", MAX_NAME, false)?;
    text(obj, "", "documentationUrl", MAX_TEXT, false)?;
    text(obj, "", "iconUrl", MAX_TEXT, false)?;
    if let Some(p) = obj.get("provider") {
        let p = p
            .as_object()
            .ok_or_else(|| err("provider", "must be an object {organization, url}"))?;
        text(p, "provider", "organization", MAX_NAME, true)?;
        url(p, "provider", "url", true)?;
    }
    let caps = obj
        .get("capabilities")
        .ok_or_else(|| err("capabilities", "is required (an object, may be {})"))?
        .as_object()
        .ok_or_else(|| err("capabilities", "must be an object"))?;
    for key in ["streaming", "pushNotifications", "stateTransitionHistory"] {
        if let Some(v) = caps.get(key).filter(|v| !v.is_boolean()) {
            return Err(err(
                format!("capabilities.{key}"),
                format!("must be true or false, found {}", kind(v)),
            ));
        }
    }
    modes(obj, "", "defaultInputModes", true)?;
    modes(obj, "", "defaultOutputModes", true)?;
    let skills = obj
        .get("skills")
        .ok_or_else(|| err("skills", "is required (an array of skills)"))?
        .as_array()
        .ok_or_else(|| err("skills", "must be an array"))?;
    let mut ids = std::collections::HashSet::new();
    for (i, s) in skills.iter().enumerate() {
        let at = format!("skills[{i}]");
        let s = s.as_object().ok_or_else(|| {
            err(
                at.as_str(),
                "must be an object {id, name, description, tags}",
            )
        })?;
        let id = text(s, &at, "id", MAX_NAME, true)?.unwrap_or_default();
        if id.is_empty() {
            return Err(err(format!("{at}.id"), "must not be empty"));
        }
        if !ids.insert(id.to_owned()) {
            return Err(err(
                format!("{at}.id"),
                format!("duplicate skill id {id:?}"),
            ));
        }
        text(s, &at, "name", MAX_NAME, true)?;
        text(s, &at, "description", MAX_TEXT, true)?;
        strings(s, &at, "tags", MAX_NAME, true)?;
        strings(s, &at, "examples", MAX_TEXT, false)?;
        modes(s, &at, "inputModes", false)?;
        modes(s, &at, "outputModes", false)?;
    }
    if let Some(v) = obj.get("securitySchemes")
        && !v.is_object()
    {
        return Err(err("securitySchemes", "must be an object of named schemes"));
    }
    if let Some(v) = obj.get("security")
        && !v.is_array()
    {
        return Err(err("security", "must be an array"));
    }
    if let Some(v) = obj.get("supportsAuthenticatedExtendedCard")
        && !v.is_boolean()
    {
        return Err(err(
            "supportsAuthenticatedExtendedCard",
            "must be true or false",
        ));
    }
    if let Some(sigs) = obj.get("signatures") {
        let sigs = sigs
            .as_array()
            .ok_or_else(|| err("signatures", "must be an array of {protected, signature}"))?;
        for (i, s) in sigs.iter().enumerate() {
            let at = format!("signatures[{i}]");
            let s = s
                .as_object()
                .ok_or_else(|| err(at.as_str(), "must be an object {protected, signature}"))?;
            text(s, &at, "protected", MAX_TEXT, true)?;
            text(s, &at, "signature", MAX_TEXT, true)?;
            if let Some(h) = s.get("header").filter(|h| !h.is_object()) {
                return Err(err(
                    format!("{at}.header"),
                    format!("must be an object, found {}", kind(h)),
                ));
            }
        }
    }
    Ok(name.to_owned())
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn text<'a>(
    obj: &'a Map<String, Value>,
    parent: &str,
    key: &str,
    max: usize,
    required: bool,
) -> Result<Option<&'a str>, CardError> {
    match obj.get(key) {
        None if required => Err(err(join(parent, key), "is required (a string)")),
        None => Ok(None),
        Some(Value::String(s)) if s.len() > max => Err(err(
            join(parent, key),
            format!("is {} bytes; at most {max}", s.len()),
        )),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(err(
            join(parent, key),
            format!("must be a string, found {}", kind(v)),
        )),
    }
}

fn url(obj: &Map<String, Value>, parent: &str, key: &str, required: bool) -> Result<(), CardError> {
    if let Some(u) = text(obj, parent, key, MAX_TEXT, required)? {
        let ok = ["https://", "http://"]
            .iter()
            .any(|p| u.len() > p.len() && u[..p.len()].eq_ignore_ascii_case(p))
            && !u.chars().any(char::is_whitespace);
        if !ok {
            return Err(err(
                join(parent, key),
                format!("{u:?} is not an http(s) URL"),
            ));
        }
    }
    Ok(())
}

fn strings(
    obj: &Map<String, Value>,
    parent: &str,
    key: &str,
    max: usize,
    required: bool,
) -> Result<(), CardError> {
    let at = join(parent, key);
    let list = match obj.get(key) {
        None if required => return Err(err(at, "is required (an array of strings)")),
        None => return Ok(()),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(err(
                at,
                format!("must be an array of strings, found {}", kind(v)),
            ));
        }
    };
    for (i, v) in list.iter().enumerate() {
        match v {
            Value::String(s) if s.len() > max => {
                return Err(err(
                    format!("{at}[{i}]"),
                    format!("is {} bytes; at most {max}", s.len()),
                ));
            }
            Value::String(_) => {}
            v => {
                return Err(err(
                    format!("{at}[{i}]"),
                    format!("must be a string, found {}", kind(v)),
                ));
            }
        }
    }
    Ok(())
}

/// Media types such as `text/plain` or `application/json`.
fn modes(
    obj: &Map<String, Value>,
    parent: &str,
    key: &str,
    required: bool,
) -> Result<(), CardError> {
    strings(obj, parent, key, MAX_NAME, required)?;
    let at = join(parent, key);
    for (i, m) in obj
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let m = m.as_str().unwrap_or_default();
        let ok = m
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !m.contains(' '));
        if !ok {
            return Err(err(
                format!("{at}[{i}]"),
                format!("{m:?} is not a media type like text/plain"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn sample() -> Value {
        json!({
            "name": "Researcher",
            "description": "Finds papers",
            "version": "1.0.0",
            "protocolVersion": "0.3.0",
            "url": "https://agent.example/a2a",
            "provider": {"organization": "Example", "url": "https://example.org"},
            "capabilities": {"streaming": true},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain", "application/json"],
            "skills": [{"id": "search", "name": "Search", "description": "Search papers",
                        "tags": ["research"], "examples": ["find RFC 8785"]}],
        })
    }

    fn path_of(card: Value) -> String {
        validate(&card).unwrap_err().path
    }

    #[test]
    fn accepts_a_full_card_and_names_the_bad_field() {
        assert_eq!(validate(&sample()).unwrap(), "Researcher");
        let mut c = sample();
        c.as_object_mut().unwrap().remove("name");
        assert_eq!(path_of(c), "name");
        let mut c = sample();
        c["skills"][0]["tags"][0] = json!(3);
        assert_eq!(path_of(c), "skills[0].tags[0]");
        let mut c = sample();
        c["url"] = json!("ftp://x");
        assert_eq!(path_of(c), "url");
        let mut c = sample();
        c["defaultInputModes"] = json!(["text"]);
        assert_eq!(path_of(c), "defaultInputModes[0]");
        let mut c = sample();
        c["capabilities"]["streaming"] = json!("yes");
        assert_eq!(path_of(c), "capabilities.streaming");
        let mut c = sample();
        c["skills"] = json!([c["skills"][0].clone(), c["skills"][0].clone()]);
        assert_eq!(path_of(c), "skills[1].id");
        let mut c = sample();
        c["provider"] = json!({"organization": "x"});
        assert_eq!(path_of(c), "provider.url");
        let mut c = sample();
        c["signatures"] = json!([{"protected": "x"}]);
        assert_eq!(path_of(c), "signatures[0].signature");
        assert_eq!(path_of(json!([])), "");
    }
}
