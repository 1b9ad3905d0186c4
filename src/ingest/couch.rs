//! CouchDB's wrappers around documents, and which documents of an account's month database
//! (MODB) are CDRs.
//!
//! An operator's month of calls often comes as a dump of the MODB rather than as `/cdrs` pages:
//! - `_all_docs?include_docs=true`: `{"total_rows":N,"offset":0,"rows":[{"id","key","value":
//!   {"rev"},"doc":{..}}, ..]}` (CouchDB's `couch_mrview_http:row_to_json/2`);
//! - KAZOO's MODB archive (`kz_couch_db:db_archive/3`, written before `kazoo_modb` deletes a
//!   database older than `modb.active_modbs` months): the same rows as one JSON array, a row a
//!   line;
//! - a backup tool's `_bulk_docs` body: `{"new_edits":false,"docs":[{..}, ..]}`;
//! - a `_changes?include_docs=true` feed: `{"results":[{"seq","id","changes","deleted"?,"doc"}],
//!   "last_seq":..}`, or (`feed=continuous`) one change a line, then a `{"last_seq":..}` line.
//!
//! The scanner streams the `rows`, `docs` and `results` arrays element by element as it does a
//! crossbar envelope's `data` ([`super::scan`]); [`wrapper`] unwraps a row or a change to its
//! document, and [`not_a_cdr`] says which documents are not CDRs. A month database holds faxes,
//! call-recording metadata, ledgers, voicemail messages and design documents beside CDRs, and
//! several of them carry the call's `call_id` (a fax and a recording at the top level): read as
//! CDRs they would replace the call's leg or become legs of their own. KAZOO's own `cdrs` view
//! (`kazoo_modb` `views/cdrs.json`) maps only `pvt_type == 'cdr'` documents that are not
//! `pvt_deleted`; so does rerate. A document with no `pvt_type` (an export that strips KAZOO's
//! private fields) is read as a CDR, as before.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// A member of an object: its key and raw JSON value.
pub type Member<'a> = (Cow<'a, str>, &'a RawValue);

/// What a CouchDB wrapper holds.
#[derive(Debug)]
pub enum Wrapper<'a> {
    /// Not a CouchDB wrapper: read the object itself.
    None,
    /// A row (`_all_docs`, KAZOO's archive) or a change with its document: read the document.
    Doc(&'a RawValue),
    /// A whole body read as one value: the array of its rows, documents or changes.
    Body(&'a RawValue),
    /// A deleted document's row or change (a tombstone): no document to read.
    Deleted,
    /// A row or change without its document (fetched without `include_docs=true`, or a row
    /// CouchDB answered with an `error`).
    NoDoc,
    /// The last line of a continuous `_changes` feed (`{"last_seq":..}`): not a record.
    FeedEnd,
}

fn member<'a>(m: &[Member<'a>], key: &str) -> Option<&'a RawValue> {
    m.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn is_true(v: Option<&RawValue>) -> bool {
    v.is_some_and(|v| v.get() == "true")
}

/// Whether a row's `value` says the document is deleted (`{"rev":..,"deleted":true}`).
fn value_deleted(v: Option<&RawValue>) -> bool {
    #[derive(serde::Deserialize)]
    struct Value {
        #[serde(default)]
        deleted: bool,
    }
    v.and_then(|v| serde_json::from_str::<Value>(v.get()).ok())
        .is_some_and(|v| v.deleted)
}

/// What the object with no `call_id` whose other members are `m` is as a CouchDB wrapper.
/// `whole`: the object is a whole unit, not an element of an array (only a whole body holds
/// `rows`, `docs` or `results`).
pub fn wrapper<'a>(m: &[Member<'a>], whole: bool) -> Wrapper<'a> {
    let has = |k: &str| member(m, k).is_some();
    if whole {
        for key in ["rows", "docs", "results"] {
            if let Some(v) = member(m, key).filter(|v| v.get().starts_with('[')) {
                return Wrapper::Body(v);
            }
        }
    }
    let row = has("id") && (has("key") || has("value") || has("doc") || has("error"));
    let change = has("seq") && (has("changes") || has("doc") || has("deleted"));
    if !row && !change {
        let feed_end = !m.is_empty() && m.iter().all(|(k, _)| k == "last_seq" || k == "pending");
        return if feed_end {
            Wrapper::FeedEnd
        } else {
            Wrapper::None
        };
    }
    let doc = member(m, "doc").filter(|d| d.get().starts_with('{'));
    if is_true(member(m, "deleted")) || value_deleted(member(m, "value")) {
        return Wrapper::Deleted;
    }
    match doc {
        Some(d) => Wrapper::Doc(d),
        None => Wrapper::NoDoc,
    }
}

/// The longest `pvt_type` kept as its own count; a longer one counts as `other`.
const MAX_TYPE_LEN: usize = 64;

/// Why a document (its members other than `call_id`, `m`) is not a CDR, as the name it is
/// counted under: `tombstone` (`_deleted`), `_design` (a design document), `pvt_deleted` (a
/// document KAZOO deleted softly), or its `pvt_type` when that is not `cdr` (`fax`,
/// `call_recording`, `ledger`, `mailbox_message`, ...). `None`: a CDR, or a document that does
/// not say (no `pvt_type`), read as one.
pub fn not_a_cdr(m: &[Member<'_>]) -> Option<String> {
    if is_true(member(m, "_deleted")) {
        return Some("tombstone".into());
    }
    let id: Option<String> = member(m, "_id").and_then(|v| serde_json::from_str(v.get()).ok());
    if id.is_some_and(|id| id.starts_with("_design/")) {
        return Some("_design".into());
    }
    if is_true(member(m, "pvt_deleted")) {
        return Some("pvt_deleted".into());
    }
    let ty: Option<String> = member(m, "pvt_type").and_then(|v| serde_json::from_str(v.get()).ok());
    match ty {
        Some(t) if t == "cdr" => None,
        Some(t) if t.len() <= MAX_TYPE_LEN && !t.is_empty() => Some(t),
        Some(_) => Some("other".into()),
        None => None,
    }
}

/// Why a row or change without its document is rejected.
pub fn no_doc_message() -> String {
    "a CouchDB row or change without its document: fetch it with include_docs=true".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<Member<'_>> {
        let map: std::collections::BTreeMap<&str, &RawValue> =
            serde_json::from_str(text).unwrap_or_default();
        map.into_iter()
            .map(|(k, v)| (Cow::Borrowed(k), v))
            .collect()
    }

    #[test]
    fn rows_and_changes_unwrap_to_their_documents() {
        let row = r#"{"id":"202611-c1","key":"202611-c1","value":{"rev":"1-a"},"doc":{"_id":"202611-c1","call_id":"c1"}}"#;
        let m = members(row);
        assert!(matches!(wrapper(&m, false), Wrapper::Doc(d) if d.get().contains("\"c1\"")));
        let change = r#"{"seq":"3-g1","id":"x","changes":[{"rev":"2-b"}],"deleted":true,"doc":{"_id":"x","_rev":"2-b","_deleted":true}}"#;
        assert!(matches!(wrapper(&members(change), false), Wrapper::Deleted));
        let no_doc = r#"{"id":"202611-c1","key":"202611-c1","value":{"rev":"1-a"}}"#;
        assert!(matches!(wrapper(&members(no_doc), false), Wrapper::NoDoc));
        let deleted_row = r#"{"id":"a","key":"a","value":{"rev":"2-c","deleted":true},"doc":null}"#;
        assert!(matches!(
            wrapper(&members(deleted_row), false),
            Wrapper::Deleted
        ));
        assert!(matches!(
            wrapper(&members(r#"{"last_seq":"9-g1","pending":0}"#), false),
            Wrapper::FeedEnd
        ));
        let body = r#"{"total_rows":2,"offset":0,"rows":[]}"#;
        assert!(matches!(wrapper(&members(body), true), Wrapper::Body(_)));
        // An element is never a body; a CDR-like object is no wrapper.
        assert!(matches!(wrapper(&members(body), false), Wrapper::None));
        assert!(matches!(
            wrapper(&members(r#"{"billing_seconds":3}"#), false),
            Wrapper::None
        ));
    }

    #[test]
    fn only_cdr_documents_and_untyped_ones_are_read() {
        let t = |text: &str| not_a_cdr(&members(text));
        assert_eq!(t(r#"{"pvt_type":"cdr"}"#), None);
        assert_eq!(t(r#"{"billing_seconds":3}"#), None);
        assert_eq!(t(r#"{"pvt_type":"fax"}"#).as_deref(), Some("fax"));
        assert_eq!(
            t(r#"{"pvt_type":"cdr","pvt_deleted":true}"#).as_deref(),
            Some("pvt_deleted")
        );
        assert_eq!(
            t(r#"{"_id":"_design/cdrs","views":{}}"#).as_deref(),
            Some("_design")
        );
        assert_eq!(
            t(r#"{"_id":"x","_rev":"2-b","_deleted":true}"#).as_deref(),
            Some("tombstone")
        );
        let long = format!(r#"{{"pvt_type":"{}"}}"#, "x".repeat(65));
        assert_eq!(t(&long).as_deref(), Some("other"));
    }
}
