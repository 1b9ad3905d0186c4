//! Every JSON shape KAZOO writes, made per test exactly as its code writes it (crossbar's
//! `api_util` envelopes and chunked writer, `kz_doc:public_fields/1`, the cdr app's stored
//! documents, message-bus events), read by the real CLI.

use std::path::Path;

use polars::prelude::*;

use crate::util::*;

const ACCOUNT: &str = "7425f05d1b8e4c3fa2d6e9b0c1d2e3f4";
/// 2026-11-04T15:00:00Z: Unix microseconds and Gregorian seconds.
const START_US: i64 = 1_793_804_400_000_000;
const START_GREG: i64 = 63_961_023_600;

/// A CDR as the cdr app stores it (normalized keys, `pvt_*`), 61 billed seconds of a 65 s leg
/// at R 100, RI 60, RM 60: 100 + ceil(1/60)·100 = 200 units.
fn stored_doc(call_id: &str) -> String {
    format!(
        r#"{{"_id":"202611-{call_id}","_rev":"2-8f1e","app_name":"ecallmgr","billing_seconds":61,"call_direction":"outbound","call_id":"{call_id}","callee_id_number":"+442071838750","caller_id_number":"+14155550100","channel_created_time":{START_US},"custom_channel_vars":{{"account_id":"{ACCOUNT}","account_billing":"per_minute","rate":"100","rate_increment":"60","rate_minimum":"60","surcharge":"0","bridge_id":"{call_id}"}},"duration_seconds":65,"hangup_cause":"NORMAL_CLEARING","interaction_id":"{START_GREG}-k1","interaction_key":"k1","interaction_time":{START_GREG},"timestamp":{},"pvt_account_db":"account%2F74%2F25%2Ff05d1b8e4c3fa2d6e9b0c1d2e3f4-202611","pvt_account_id":"{ACCOUNT}","pvt_created":{},"pvt_modified":{},"pvt_type":"cdr","pvt_vsn":2}}"#,
        START_GREG + 65,
        START_GREG + 65,
        START_GREG + 65
    )
}

/// `kz_doc:public_fields/1`: no `_*` or `pvt_*` key, and `id` appended.
fn public_doc(call_id: &str) -> String {
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&stored_doc(call_id)).expect("the doc is JSON");
    let mut out = String::from("{");
    for (k, v) in doc
        .iter()
        .filter(|(k, _)| !k.starts_with('_') && !k.starts_with("pvt_"))
    {
        out.push_str(&format!("{}:{},", serde_json::json!(k), v));
    }
    out.push_str(&format!(r#""id":"202611-{call_id}"}}"#));
    out
}

/// `api_util:create_default_resp_envelope/1`: status, request_id, revision, data, then the
/// base members (request_id a second time among them), then the view's paging members.
fn envelope(data: &str, paging: &str) -> String {
    format!(
        r#"{{"status":"success","request_id":"req-1","revision":"undefined","data":{data},"auth_token":"tok","tokens":{{"consumed":1,"remaining":99}},"request_id":"req-1","node":"bm9kZQ","timestamp":"2026-11-05T08:00:00Z","version":"5.0.1"{paging}}}"#
    )
}

fn run_dir(dir: &Path) -> (std::process::Output, std::path::PathBuf) {
    let out = dir.join("out");
    let o = rerate(&[
        "run",
        dir.join("in").to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    (o, out)
}

fn counts(out: &Path) -> (i64, i64, i64) {
    let m = json_file(&out.join("manifest.json"));
    let c = &m["counts"];
    let n = |k: &str| c[k].as_i64().unwrap_or(-1);
    (n("records_read"), n("legs_written"), n("rejected"))
}

/// All legs: (call_id, start_time µs, cost_units, source_line, source_offset).
fn leg_rows(out: &Path) -> Vec<(String, i64, Option<i64>, i64, i64)> {
    let mut rows = Vec::new();
    for (_, _, df) in read_dataset(&out.join("legs")) {
        let ids = df
            .column("call_id")
            .expect("call_id")
            .str()
            .expect("str")
            .clone();
        let start = df
            .column("start_time")
            .expect("start")
            .datetime()
            .expect("dt")
            .physical()
            .clone();
        let cost = df
            .column("cost_units")
            .expect("cost")
            .i64()
            .expect("i64")
            .clone();
        let line = df
            .column("source_line")
            .expect("line")
            .i64()
            .expect("i64")
            .clone();
        let off = df
            .column("source_offset")
            .expect("offset")
            .i64()
            .expect("i64")
            .clone();
        for i in 0..df.height() {
            rows.push((
                ids.get(i).unwrap_or_default().to_owned(),
                start.get(i).unwrap_or_default(),
                cost.get(i),
                line.get(i).unwrap_or_default(),
                off.get(i).unwrap_or_default(),
            ));
        }
    }
    rows.sort();
    rows
}

#[test]
fn crossbar_cdr_by_id_and_legs_responses_are_read_as_their_code_writes_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input)?;
    // GET /cdrs/{id}: crossbar_doc:load/3, the public fields of one stored document.
    std::fs::write(input.join("a.json"), envelope(&public_doc("by-id"), ""))?;
    // GET /cdrs/legs/{id}: crossbar_view:load_modb/3 with normalize_leg_view_results/2, the
    // whole stored documents of the interaction's legs, paged.
    let legs = format!("[{},{}]", stored_doc("leg-1"), stored_doc("leg-2"));
    std::fs::write(
        input.join("b.json"),
        envelope(&legs, r#","page_size":2,"start_key":"g2wAAAACbQAAAA""#),
    )?;
    let (o, out) = run_dir(dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&out), (3, 3, 0));
    let rows = leg_rows(&out);
    let ids: Vec<_> = rows.iter().map(|r| (r.0.as_str(), r.1, r.2)).collect();
    assert_eq!(
        ids,
        [
            ("by-id", START_US, Some(200)),
            ("leg-1", START_US, Some(200)),
            ("leg-2", START_US, Some(200))
        ]
    );
    let legs = read_dataset(&out.join("legs"));
    assert!(legs
        .iter()
        .all(|(a, d, _)| a == ACCOUNT && d == "2026-11-04"));
    Ok(())
}

/// GET /cdrs/summary (cb_cdrs:load_cdr_summary/1 over the `format_summary` list) holds totals,
/// not CDRs: recognized by its keys, skipped with a message, listed in the manifest, no reject.
#[test]
fn a_cdrs_summary_response_is_skipped_and_said_so() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input)?;
    let summary = r#"{"inbound":{"sip.example.com":{"did_us":{"total":120,"US-DID":120}}},"outbound":{"sip.example.com":{"international":{"total":61,"UK":61}}}}"#;
    std::fs::write(input.join("summary.json"), envelope(summary, ""))?;
    // An empty summary: its data is an empty object.
    std::fs::write(input.join("empty.json"), envelope("{}", ""))?;
    // A CDR beside them, so the run has legs.
    std::fs::write(input.join("cdr.json"), stored_doc("c1"))?;
    let (o, out) = run_dir(dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&out), (1, 1, 0));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("summary.json line 1: a crossbar /cdrs/summary response"),
        "{stderr}"
    );
    let m = json_file(&out.join("manifest.json"));
    let skipped: Vec<_> = m["inputs"]
        .as_array()
        .ok_or("inputs")?
        .iter()
        .filter_map(|f| Some((f["path"].as_str()?, f["skipped_content"].as_array()?.len())))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(skipped.iter().all(|(_, n)| *n == 1));
    Ok(())
}

/// The shape of a 1.48 GB month export (issue 16): `[`, one `{...},` element a line, `]`. Here
/// 20,000 elements of about 3.5 KB (70 MB, more than one 64 MiB read window): every one a leg,
/// on its own physical line, no reject; and the same small array with CRLF and lone-CR line ends.
#[test]
fn an_array_one_element_a_line_is_one_array_at_any_size() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input)?;
    let pad = "v=0 o=FreeSWITCH ".repeat(200);
    let n = 20_000;
    let mut text = String::with_capacity(n * 3600);
    text.push_str("[\n");
    for i in 0..n {
        let doc = stored_doc(&format!("big-{i:05}"));
        let sep = if i + 1 < n { "," } else { "" };
        text.push_str(&format!(
            "{},\"local_sdp\":\"{pad}\"}}{sep}\n",
            &doc[..doc.len() - 1]
        ));
    }
    text.push_str("]\n");
    assert!(text.len() > 64 << 20);
    std::fs::write(input.join("month.json"), &text)?;
    let (o, out) = run_dir(dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&out), (n as i64, n as i64, 0));
    let rows = leg_rows(&out);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(
            (r.0.as_str(), r.3),
            (format!("big-{i:05}").as_str(), i as i64 + 2)
        );
        assert_eq!(
            &text.as_bytes()[r.4 as usize..r.4 as usize + 9],
            b"{\"_id\":\"2"
        );
    }

    for eol in ["\r\n", "\r"] {
        let dir = tempfile::tempdir()?;
        let input = dir.path().join("in");
        std::fs::create_dir_all(&input)?;
        let text = [
            "[",
            &format!("{},", stored_doc("a")),
            &stored_doc("b"),
            "]",
            "",
        ]
        .join(eol);
        std::fs::write(input.join("small.json"), &text)?;
        let (o, out) = run_dir(dir.path());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(counts(&out), (2, 2, 0), "{eol:?}");
        let lines: Vec<_> = leg_rows(&out).iter().map(|r| (r.0.clone(), r.3)).collect();
        assert_eq!(lines, [("a".to_owned(), 2), ("b".to_owned(), 3)], "{eol:?}");
    }
    Ok(())
}

/// Several JSON values on one line: each leg's (source_file, source_offset) is its own.
#[test]
fn values_sharing_a_line_have_their_own_source_offset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input)?;
    let text = format!(
        "{}{} {}\n",
        stored_doc("x1"),
        stored_doc("x2"),
        stored_doc("x3")
    );
    std::fs::write(input.join("line.json"), &text)?;
    let (o, out) = run_dir(dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = leg_rows(&out);
    let d = stored_doc("x1").len() as i64;
    let got: Vec<_> = rows.iter().map(|r| (r.0.as_str(), r.3, r.4)).collect();
    assert_eq!(got, [("x1", 1, 0), ("x2", 1, d), ("x3", 1, 2 * d + 1)]);
    Ok(())
}

/// A CHANNEL_DESTROY saved straight off the message bus, keys as ecallmgr publishes them: read
/// as the CDR the cdr app saves from it (cdr_channel_destroy:prepare_and_save/3, then
/// kz_json:normalize_jobj/1).
#[test]
fn a_channel_destroy_event_off_the_bus_is_a_cdr() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input)?;
    let event = format!(
        r#"{{"Event-Category":"call_event","Event-Name":"CHANNEL_DESTROY","Call-ID":"ev-1","Call-Direction":"outbound","Caller-ID-Number":"+14155550100","Callee-ID-Number":"+442071838750","Billing-Seconds":"61","Duration-Seconds":"65","Ringing-Seconds":"4","Channel-Created-Time":"{START_US}","Timestamp":"{}","Hangup-Cause":"NORMAL_CLEARING","Other-Leg-Call-ID":null,"Custom-Channel-Vars":{{"Account-ID":"{ACCOUNT}","Account-Billing":"per_minute","Rate":"100","Rate-Increment":"60","Rate-Minimum":"60","Surcharge":"0","Call-Interaction-ID":"{START_GREG}-k9","Bridge-ID":"ev-1"}},"Msg-ID":"m1","App-Name":"ecallmgr","App-Version":"5.0.1","Node":"ecallmgr@node"}}"#,
        START_GREG + 65
    );
    std::fs::write(input.join("events.json"), format!("{event}\n"))?;
    let (o, out) = run_dir(dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&out), (1, 1, 0));
    let rows = leg_rows(&out);
    assert_eq!(
        rows.iter()
            .map(|r| (r.0.as_str(), r.1, r.2))
            .collect::<Vec<_>>(),
        [("ev-1", START_US, Some(200))]
    );
    let legs = read_dataset(&out.join("legs"));
    let (account, _, df) = legs.first().ok_or("a leg")?;
    assert_eq!(account, ACCOUNT);
    let s = |c: &str| -> Result<Option<String>, PolarsError> {
        Ok(df.column(c)?.str()?.get(0).map(str::to_owned))
    };
    assert_eq!(
        s("interaction_id")?.as_deref(),
        Some(&*format!("{START_GREG}-k9"))
    );
    assert_eq!(s("call_direction")?.as_deref(), Some("outbound"));
    assert_eq!(s("bridge_id")?.as_deref(), Some("ev-1"));
    Ok(())
}

/// GET /cdrs/interaction (cb_cdrs:load_chunked_cdrs/2): chunked (`api_util:init_chunk_stream/3`
/// writes `{"data":[`, each chunk its jiffy-encoded items, `close_chunk_json_envelope/2` the
/// paging and status members as strings), the items crossbar's listing rows
/// (`normalize_cdr/3` with `<<"json">>`): streamed element by element and mapped as listing rows.
#[test]
fn a_chunked_cdrs_interaction_response_is_read_as_listing_rows() -> TestResult {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in").join(ACCOUNT);
    std::fs::create_dir_all(&input)?;
    let item = |id: &str| {
        format!(
            r#"{{"id":"202611-{id}","call_id":"{id}","caller_id_number":"+14155550100","caller_id_name":"Front Desk","callee_id_number":"+442071838750","callee_id_name":"","duration_seconds":"65","billing_seconds":"61","timestamp":"{START_GREG}","hangup_cause":"NORMAL_CLEARING","other_leg_call_id":"","owner_id":"","to":"+442071838750@sip.example.com","from":"+14155550100@sip.example.com","direction":"outbound","request":"+442071838750@sip.example.com","authorizing_id":"","cost":"200","dialed_number":"+442071838750","calling_from":"+14155550100","datetime":"2026-11-04 15:00:00","unix_timestamp":"1793804400","rfc_1036":"Wed, 04 Nov 2026 15:00:00 GMT","iso_8601":"2026-11-04","call_type":"per_minute","rate":"0.01","rate_name":"UK","bridge_id":"{id}","recording_url":"","media_server":"fs1","call_priority":"","interaction_id":"{START_GREG}-k1"}}"#
        )
    };
    let text = format!(
        r#"{{"data":[{},{}], "page_size":"2","start_key":"g2wAAAABbgUA","status":"success","request_id":"req-2","node":"bm9kZQ","version":"5.0.1","timestamp":"2026-11-05T08:00:00Z","auth_token":"tok"}}"#,
        item("i-1"),
        item("i-2")
    );
    std::fs::write(input.join("interaction.json"), text)?;
    let (o, out) = run_dir(dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(counts(&out), (2, 2, 0));
    let rows = leg_rows(&out);
    assert_eq!(
        rows.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
        [("i-1", START_US), ("i-2", START_US)]
    );
    let legs = read_dataset(&out.join("legs"));
    assert!(legs
        .iter()
        .all(|(a, d, _)| a == ACCOUNT && d == "2026-11-04"));
    for (_, _, df) in &legs {
        let rec = df.column("recorded_cost_units")?.i64()?;
        assert!((0..rec.len()).all(|i| rec.get(i) == Some(200)));
    }
    Ok(())
}
