//! Parsing of the pieces of DVID URLs and bodies: `x_y_z` triples, block lists, JSON bodies.

use super::{ApiError, ApiResult};
use serde::de::DeserializeOwned;

/// Parses DVID's `a_b_c` triple of integers (sizes or offsets).
pub fn triple<T: std::str::FromStr>(text: &str, what: &str) -> ApiResult<[T; 3]> {
    let parts: Vec<&str> = text.split('_').collect();
    let bad = || {
        ApiError::bad_request(format!(
            "bad {what} {text:?}: expected three integers joined by '_', like 64_64_64"
        ))
    };
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(3);
    for p in parts {
        out.push(p.parse::<T>().map_err(|_| bad())?);
    }
    out.try_into().map_err(|_| bad())
}

/// Parses a 2-D size `a_b` (of a slice).
pub fn pair(text: &str, what: &str) -> ApiResult<[u32; 2]> {
    let bad = || {
        ApiError::bad_request(format!(
            "bad {what} {text:?}: a slice takes two integers joined by '_', like 512_512"
        ))
    };
    let (a, b) = text.split_once('_').ok_or_else(bad)?;
    Ok([a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?])
}

/// Parses a JSON object body, accepting any content type (DVID's clients often send none). An empty
/// body reads as `{}` so optional fields default. Anything but an object is refused: serde would fill
/// a struct from a JSON array field by field, in order, and DVID refuses that.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => parse_json(b"{}"),
        Some(b'{') => parse_json(body),
        Some(_) => Err(ApiError::bad_request(
            "bad JSON body: expected a JSON object {...}",
        )),
    }
}

/// Parses a JSON array body.
pub fn json_list<T: DeserializeOwned>(body: &[u8]) -> ApiResult<Vec<T>> {
    parse_json(body)
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

/// Parses `x1,y1,z1,x2,y2,z2,...` into block coordinates.
pub fn block_list(text: &str) -> ApiResult<Vec<[i32; 3]>> {
    let nums: Result<Vec<i32>, _> = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<i32>())
        .collect();
    let nums = nums.map_err(|_| {
        ApiError::bad_request(format!(
            "bad block list {text:?}: expected comma-separated integers x,y,z,..."
        ))
    })?;
    if nums.is_empty() || nums.len() % 3 != 0 {
        return Err(ApiError::bad_request(format!(
            "block list has {} numbers: expected a non-empty multiple of 3",
            nums.len()
        )));
    }
    Ok(nums.chunks(3).map(|c| [c[0], c[1], c[2]]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_triples() {
        assert_eq!(triple::<i32>("1_-2_3", "offset").unwrap(), [1, -2, 3]);
        assert!(triple::<u32>("1_-2_3", "size").is_err());
        assert!(triple::<i32>("1_2", "offset").is_err());
        assert!(triple::<i32>("1_2_x", "offset").is_err());
        assert!(triple::<i32>("99999999999_0_0", "offset").is_err());
    }

    #[test]
    fn params_json_bodies_are_objects() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            #[serde(default)]
            alias: String,
        }
        assert_eq!(json_body::<Body>(b" ").unwrap().alias, "");
        assert_eq!(json_body::<Body>(br#" {"alias":"a"}"#).unwrap().alias, "a");
        for bad in [&b"[]"[..], br#"["a"]"#, b"5", br#""a""#, b"{"] {
            assert!(json_body::<Body>(bad).is_err(), "{bad:?}");
        }
        assert_eq!(json_list::<u8>(b"[1,2]").unwrap(), vec![1, 2]);
        assert!(json_list::<u8>(b"").is_err());
    }

    #[test]
    fn params_parse_block_lists() {
        assert_eq!(
            block_list("1,2,3,4,5,6").unwrap(),
            vec![[1, 2, 3], [4, 5, 6]]
        );
        assert!(block_list("1,2").is_err());
        assert!(block_list("").is_err());
        assert!(block_list("a,b,c").is_err());
    }
}
