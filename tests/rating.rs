//! The rating formula against an independent implementation (tests/kazoo_reference.py: the
//! Erlang transcribed to Python, whose floats are IEEE doubles like Erlang's, and exact
//! fractions) over many random cases.

use std::io::Write;
use std::process::{Command, Stdio};

use rerate::internals::gen::Rng;
use rerate::internals::rate::{rate, Inputs, Rounding};

use crate::util::*;

/// The draws this test needs, on top of the crate's deterministic generator.
trait Draw {
    fn int(&mut self, n: u64) -> i64;
    fn one_of(&mut self, xs: &[i64]) -> i64;
    fn maybe(&mut self, v: i64) -> Option<i64>;
}

impl Draw for Rng {
    fn int(&mut self, n: u64) -> i64 {
        self.below(n) as i64
    }
    fn one_of(&mut self, xs: &[i64]) -> i64 {
        *self.pick(xs)
    }
    fn maybe(&mut self, v: i64) -> Option<i64> {
        (self.below(8) != 0).then_some(v)
    }
}

fn random_case(g: &mut Rng) -> Inputs {
    let rate = match g.int(3) {
        0 => g.int(100),
        1 => g.int(5_000),
        _ => g.int(200_000),
    };
    let increment = match g.int(3) {
        0 => g.one_of(&[1, 6, 30, 60, 0]),
        _ => 1 + g.int(120),
    };
    let minimum = match g.int(3) {
        0 => g.one_of(&[0, 30, 60]),
        _ => g.int(300),
    };
    let secs = g.int(7_200);
    Inputs {
        billing_seconds: g.maybe(secs),
        billing_seconds_offset: (g.int(10) == 0).then(|| g.int(30)),
        rate_nocharge_time: (g.int(4) == 0).then(|| g.int(30)),
        rate: g.maybe(rate),
        rate_increment: g.maybe(increment),
        rate_minimum: g.maybe(minimum),
        surcharge: (g.int(3) == 0).then(|| g.int(2_000)),
        discount_percentage: (g.int(4) == 0).then(|| g.int(101)),
    }
}

fn field(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

#[test]
fn kazoo_and_exact_modes_match_an_independent_implementation() -> TestResult {
    const N: usize = 200_000;
    let mut g = Rng::new(0x5EED_2026_1123);
    let cases: Vec<Inputs> = (0..N).map(|_| random_case(&mut g)).collect();
    let mut text = String::with_capacity(N * 40);
    for c in &cases {
        text += &format!(
            "{} {} {} {} {} {} {} {}\n",
            field(c.rate),
            field(c.rate_increment),
            field(c.rate_minimum),
            field(c.surcharge),
            field(c.rate_nocharge_time),
            field(c.discount_percentage),
            field(c.billing_seconds),
            field(c.billing_seconds_offset),
        );
    }
    let mut child = Command::new("python3")
        .arg(root().join("tests/kazoo_reference.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3 is needed for the reference implementation: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output()?;
    writer.join().map_err(|_| "writer thread")??;
    assert!(out.status.success(), "reference failed");
    let reference = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = reference.lines().collect();
    assert_eq!(lines.len(), N);

    let mut differs = 0;
    for (c, line) in cases.iter().zip(lines) {
        let v: Vec<i64> = line.split(' ').map(str::parse).collect::<Result<_, _>>()?;
        let k = rate(c, Rounding::Kazoo);
        let e = rate(c, Rounding::Exact);
        assert_eq!(
            (k.billed_seconds, k.cost_units),
            (v[0], v[1]),
            "kazoo mode, case {c:?}"
        );
        assert_eq!(
            (e.billed_seconds, e.cost_units),
            (v[0], v[2]),
            "exact mode, case {c:?}"
        );
        assert!(k.cost_units >= 0 && e.cost_units >= 0);
        if k.cost_units != e.cost_units {
            differs += 1;
        }
    }
    // The two arithmetics must really differ somewhere, or the comparison proves little.
    assert!(
        differs > 100,
        "kazoo and exact differ in only {differs} of {N} cases"
    );
    Ok(())
}
