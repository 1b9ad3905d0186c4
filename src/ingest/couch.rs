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
//! crossbar envelope's `data` ([`super::scan`]); [`Keys::wrapper`] unwraps a row or a change to
//! its document, and [`Keys::not_a_cdr`] says which documents are not CDRs. A month database holds faxes,
//! call-recording metadata, ledgers, voicemail messages and design documents beside CDRs, and
//! several of them carry the call's `call_id` (a fax and a recording at the top level): read as
//! CDRs they would replace the call's leg or become legs of their own. KAZOO's own `cdrs` view
//! (`kazoo_modb` `views/cdrs.json`) maps only `pvt_type == 'cdr'` documents that are not
//! `pvt_deleted`; so does rerate. A document with no `pvt_type` (an export that strips KAZOO's
//! private fields) is read as a CDR, as before.

use std::borrow::Cow;

use serde_json::value::RawValue;

/// A member of an object: its key and raw JSON value.
pub(crate) type Member<'a> = (Cow<'a, str>, &'a RawValue);

/// What a CouchDB wrapper holds.
#[derive(Debug)]
pub(crate) enum Wrapper<'a> {
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

/// The members of an object that CouchDB's wrappers and KAZOO's document types are told by,
/// found in one pass over its members (every record goes through it: a stored CDR has some
/// thirty members rerate keeps in `extra`, and most of them are none of these).
#[derive(Default)]
pub(crate) struct Keys<'a> {
    id: bool,
    key: bool,
    value: Option<&'a RawValue>,
    doc: Option<&'a RawValue>,
    error: bool,
    seq: bool,
    changes: bool,
    deleted: Option<&'a RawValue>,
    /// Members other than `last_seq` and `pending` (a feed's end has none).
    not_feed_end: bool,
    /// A `last_seq` or `pending` member.
    feed_end_seen: bool,
    body: Option<&'a RawValue>,
    doc_deleted: Option<&'a RawValue>,
    doc_id: Option<&'a RawValue>,
    pvt_deleted: Option<&'a RawValue>,
    pvt_type: Option<&'a RawValue>,
    /// `source`, `usage` and `amount` members: the shape of a ledger (`kz_ledger:to_json/1`).
    source: bool,
    usage: bool,
    amount: bool,
}

impl<'a> Keys<'a> {
    /// The members `m` that matter here (the first of each name, as KAZOO reads a key given
    /// twice).
    pub(crate) fn of(m: &[Member<'a>]) -> Self {
        let mut k = Keys::default();
        for (name, v) in m {
            let v = Some(*v);
            match name.as_ref() {
                "id" => k.id = true,
                "key" => k.key = true,
                "value" => k.value = k.value.or(v),
                "doc" => k.doc = k.doc.or(v),
                "error" => k.error = true,
                "seq" => k.seq = true,
                "changes" => k.changes = true,
                "deleted" => k.deleted = k.deleted.or(v),
                "last_seq" | "pending" => {
                    k.feed_end_seen = true;
                    continue;
                }
                "rows" | "docs" | "results" => {
                    k.body = k.body.or(v.filter(|v| v.get().starts_with('[')))
                }
                "_deleted" => k.doc_deleted = k.doc_deleted.or(v),
                "_id" => k.doc_id = k.doc_id.or(v),
                "pvt_deleted" => k.pvt_deleted = k.pvt_deleted.or(v),
                "pvt_type" => k.pvt_type = k.pvt_type.or(v),
                "source" => k.source = true,
                "usage" => k.usage = true,
                "amount" => k.amount = true,
                _ => {}
            }
            k.not_feed_end = true;
        }
        k
    }

    /// What the object (with no `call_id`) is as a CouchDB wrapper. `whole`: the object is a
    /// whole unit, not an element of an array (only a whole body holds `rows`, `docs` or
    /// `results`).
    pub(crate) fn wrapper(&self, whole: bool) -> Wrapper<'a> {
        if let Some(b) = self.body.filter(|_| whole) {
            return Wrapper::Body(b);
        }
        let row = self.id && (self.key || self.value.is_some() || self.doc.is_some() || self.error);
        let change = self.seq && (self.changes || self.doc.is_some() || self.deleted.is_some());
        if !row && !change {
            return if self.feed_end_seen && !self.not_feed_end {
                Wrapper::FeedEnd
            } else {
                Wrapper::None
            };
        }
        if is_true(self.deleted) || value_deleted(self.value) {
            return Wrapper::Deleted;
        }
        match self.doc.filter(|d| d.get().starts_with('{')) {
            Some(d) => Wrapper::Doc(d),
            None => Wrapper::NoDoc,
        }
    }

    /// Why the document is not a CDR, as the name it is counted under: `tombstone`
    /// (`_deleted`), `_design` (a design document), `pvt_deleted` (a document KAZOO deleted
    /// softly), or its `pvt_type` when that is not `cdr` (`fax`, `call_recording`, `ledger`,
    /// `mailbox_message`, ...). `None`: a CDR, or a document that does not say (no
    /// `pvt_type`), read as one.
    pub(crate) fn not_a_cdr(&self) -> Option<String> {
        if is_true(self.doc_deleted) {
            return Some("tombstone".into());
        }
        if self
            .doc_id
            .is_some_and(|v| v.get().starts_with("\"_design/"))
        {
            return Some("_design".into());
        }
        if is_true(self.pvt_deleted) {
            return Some("pvt_deleted".into());
        }
        let ty = self.pvt_type?;
        if ty.get() == "\"cdr\"" {
            return None;
        }
        match serde_json::from_str::<String>(ty.get()) {
            Ok(t) if t == "cdr" => None,
            Ok(t) if t.len() <= MAX_TYPE_LEN && !t.is_empty() => Some(t),
            _ => Some("other".into()),
        }
    }
}

impl Keys<'_> {
    /// Whether the document is a ledger, and in which shape (see [`super::ledger`]): a
    /// `pvt_type: ledger` document, or (`call_id`: the object has none) one with no
    /// `pvt_type` shaped as `kz_ledger:to_json/1` writes a ledger (`source`, and `usage` or
    /// `amount`).
    /// Stored when it has an `_id` (a database's document keeps its units), listed otherwise
    /// (crossbar's `public_json`, which turns `_id` into `id`). `None` for a deleted one.
    pub(crate) fn ledger_form(&self, call_id: bool) -> Option<super::ledger::Form> {
        use super::ledger::Form;
        if is_true(self.doc_deleted) || is_true(self.pvt_deleted) {
            return None;
        }
        let ty = self.pvt_type.map(|t| match t.get() {
            "\"ledger\"" => Cow::Borrowed("ledger"),
            // Escaped (`"\u006cedger"`): KAZOO reads the decoded text.
            raw => Cow::Owned(serde_json::from_str::<String>(raw).unwrap_or_default()),
        });
        match ty.as_deref() {
            Some("ledger") => Some(Form::Stored),
            None if !call_id && self.source && (self.usage || self.amount) => match self.doc_id {
                Some(_) => Some(Form::Stored),
                None => Some(Form::Listing),
            },
            _ => None,
        }
    }
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

/// The longest `pvt_type` kept as its own count; a longer one counts as `other`.
const MAX_TYPE_LEN: usize = 64;

/// Why a row or change without its document is rejected.
pub(crate) fn no_doc_message() -> String {
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
        assert!(
            matches!(Keys::of(&m).wrapper(false), Wrapper::Doc(d) if d.get().contains("\"c1\""))
        );
        let change = r#"{"seq":"3-g1","id":"x","changes":[{"rev":"2-b"}],"deleted":true,"doc":{"_id":"x","_rev":"2-b","_deleted":true}}"#;
        assert!(matches!(
            Keys::of(&members(change)).wrapper(false),
            Wrapper::Deleted
        ));
        let no_doc = r#"{"id":"202611-c1","key":"202611-c1","value":{"rev":"1-a"}}"#;
        assert!(matches!(
            Keys::of(&members(no_doc)).wrapper(false),
            Wrapper::NoDoc
        ));
        let deleted_row = r#"{"id":"a","key":"a","value":{"rev":"2-c","deleted":true},"doc":null}"#;
        assert!(matches!(
            Keys::of(&members(deleted_row)).wrapper(false),
            Wrapper::Deleted
        ));
        assert!(matches!(
            Keys::of(&members(r#"{"last_seq":"9-g1","pending":0}"#)).wrapper(false),
            Wrapper::FeedEnd
        ));
        let body = r#"{"total_rows":2,"offset":0,"rows":[]}"#;
        assert!(matches!(
            Keys::of(&members(body)).wrapper(true),
            Wrapper::Body(_)
        ));
        // An element is never a body; a CDR-like object is no wrapper.
        assert!(matches!(
            Keys::of(&members(body)).wrapper(false),
            Wrapper::None
        ));
        assert!(matches!(
            Keys::of(&members(r#"{"billing_seconds":3}"#)).wrapper(false),
            Wrapper::None
        ));
    }

    #[test]
    fn only_cdr_documents_and_untyped_ones_are_read() {
        let t = |text: &str| Keys::of(&members(text)).not_a_cdr();
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
