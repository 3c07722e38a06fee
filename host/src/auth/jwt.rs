//! The compact JWT codec: three base64url segments without padding; the signed bytes are
//! `b64url(header) + "." + b64url(payload)`. Decoding only splits and parses — signatures
//! are checked by the algorithm modules.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::AuthError;

/// A token split into its parts, nothing verified yet.
#[derive(Debug)]
pub struct Compact<'a> {
    /// The header's `alg`.
    pub alg: String,
    /// The decoded header object.
    pub header: serde_json::Value,
    /// The decoded payload (claims) object.
    pub payload: serde_json::Value,
    /// The bytes the signature covers.
    pub signed: &'a str,
    /// The decoded signature bytes.
    pub signature: Vec<u8>,
}

/// Unpadded base64url of `bytes`.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(segment: &str, which: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::BadEncoding(format!("the {which} is not unpadded base64url")))
}

/// Splits and decodes a token. The header and payload must be JSON objects.
pub fn decode(token: &str) -> Result<Compact<'_>, AuthError> {
    let segments = token.split('.').count();
    if segments != 3 {
        return Err(AuthError::Segments(segments));
    }
    let (signed, sig) = token.rsplit_once('.').unwrap_or((token, ""));
    let (h, p) = signed.split_once('.').unwrap_or((signed, ""));
    let object = |bytes: Vec<u8>, which: &str| -> Result<serde_json::Value, AuthError> {
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v @ serde_json::Value::Object(_)) => Ok(v),
            _ => Err(AuthError::BadEncoding(format!(
                "the {which} is not a JSON object"
            ))),
        }
    };
    let header = object(unb64(h, "header")?, "header")?;
    let payload = object(unb64(p, "payload")?, "payload")?;
    let signature = unb64(sig, "signature")?;
    let alg = header
        .get("alg")
        .and_then(|a| a.as_str())
        .ok_or_else(|| AuthError::BadEncoding("the header has no \"alg\"".into()))?
        .to_owned();
    Ok(Compact {
        alg,
        header,
        payload,
        signed,
        signature,
    })
}

/// `b64url(header).b64url(payload)`: the bytes to sign.
pub fn signing_input(header: &serde_json::Value, payload: &serde_json::Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_input() {
        let input = signing_input(
            &serde_json::json!({"alg": "SOL_EDDSA", "typ": "JWT"}),
            &serde_json::json!({"iss": "x"}),
        );
        let token = format!("{input}.{}", b64(&[1, 2, 3]));
        let c = decode(&token).unwrap();
        assert_eq!(c.alg, "SOL_EDDSA");
        assert_eq!(c.signed, input);
        assert_eq!(c.signature, vec![1, 2, 3]);
        assert!(matches!(decode("a.b"), Err(AuthError::Segments(2))));
        assert!(matches!(decode("a.b.c.d"), Err(AuthError::Segments(4))));
        assert!(matches!(
            decode("!!.e30.AA"),
            Err(AuthError::BadEncoding(_))
        ));
        // Padding is not base64url-without-padding.
        assert!(matches!(
            decode(&format!("{input}.AQI=")),
            Err(AuthError::BadEncoding(_))
        ));
        let no_alg = format!(
            "{}.{}",
            signing_input(&serde_json::json!({}), &serde_json::json!({})),
            "AA"
        );
        assert!(matches!(decode(&no_alg), Err(AuthError::BadEncoding(_))));
    }
}
