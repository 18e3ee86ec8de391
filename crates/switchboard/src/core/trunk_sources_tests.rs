//! Trunks' source names driven through the whole core with a virtual clock and a scripted
//! name server (see test_harness): looked up at start, refreshed before their TTL runs
//! out, kept and then dropped while lookups fail, added and forgotten by reloads, and
//! requests from their addresses taken as the trunk's.

use super::{refresh_at, KEEP_STALE, MIN_INTERVAL, REFRESH_LEAD_MAX};
use crate::core::Input;
use crate::test_harness::*;
use std::time::{Duration, Instant};
use switchboard_sip::locate::{Answer, Query, Record, RecordType};

/// The carrier's SBC as DNS names it, and its addresses before and after a change.
const SBC: &str = "sbc.carrier.test";
const SBC_OLD: &str = "127.0.0.7:5060";
const SBC_NEW: &str = "127.0.0.8:5060";

/// The test policy with the carrier's trunk known by its SBC's name instead of a network.
fn by_name() -> String {
    POLICY.replace(
        "sources = [\"127.0.0.2/32\"]",
        &format!("sources = [\"{SBC}\"]"),
    )
}

/// A name server whose only record is `name`'s A record, `ip`, with `ttl` seconds.
fn a_record(name: &'static str, ip: [u8; 4], ttl: u64) -> impl Fn(&Query) -> Answer {
    move |q| match (q.record_type, q.name.as_str()) {
        (RecordType::A, n) if n == name => Answer::Records {
            records: vec![Record::Ip(ip.into())],
            ttl: Duration::from_secs(ttl),
        },
        _ => Answer::NoRecords { ttl: None },
    }
}

/// A name server that does not answer in time.
fn failing(_: &Query) -> Answer {
    Answer::Failed("no answer from 127.0.0.53:53".into())
}

/// A call from the carrier's number to the trunk's DID (as the carrier writes it), from
/// `from`; the first line of what `from` gets back first: `100 Trying` for a trunk's
/// call, `407` for a stranger's.
fn call_from(t: &mut T, from: &str, call: &str) -> String {
    t.input(
        from,
        &invite("+447700900123", from, "01632960000", call, ""),
    );
    let out = t.take();
    let answers: Vec<String> = to(&out, from)
        .into_iter()
        .filter(|m| header(m, "Call-ID") == Some(call))
        .collect();
    let first = answers
        .first()
        .unwrap_or_else(|| panic!("nothing back to {from}: {out:?}"));
    first_line(first).to_string()
}

fn is_trunks(t: &mut T, from: &str, call: &str) -> bool {
    match call_from(t, from, call).as_str() {
        "SIP/2.0 100 Trying" => true,
        "SIP/2.0 407 Proxy Authentication Required" => false,
        other => panic!("unexpected answer to {call} from {from}: {other}"),
    }
}

/// The carrier trunk's source names as `GET /v1/trunks` shows them: (name, addresses,
/// error).
fn shown(t: &T) -> Vec<(String, Vec<String>, Option<String>)> {
    let trunks = t.core.trunks();
    let carrier = trunks.iter().find(|s| s.trunk == "carrier").unwrap();
    carrier
        .source_names
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                n.addresses.iter().map(|a| a.to_string()).collect(),
                n.error.clone(),
            )
        })
        .collect()
}

fn asked(t: &T) -> Vec<String> {
    t.lookups.iter().map(|q| q.to_string()).collect()
}

/// Lets `secs` seconds pass a second at a time, answering every lookup from `dns`.
fn run_for(t: &mut T, secs: u64, dns: &impl Fn(&Query) -> Answer) {
    for _ in 0..secs {
        t.advance(1);
        t.answer_dns(dns);
    }
}

#[test]
fn refreshes_go_a_tenth_of_the_ttl_early_within_bounds() {
    let now = Instant::now();
    let s = Duration::from_secs;
    assert_eq!(refresh_at(now, now + s(60)), now + s(54));
    assert_eq!(
        refresh_at(now, now + s(3600)),
        now + s(3600) - REFRESH_LEAD_MAX
    );
    // A short TTL is not asked again sooner than a second after the answer.
    assert_eq!(refresh_at(now, now + s(1)), now + MIN_INTERVAL);
    assert_eq!(refresh_at(now, now), now + MIN_INTERVAL);
    assert_eq!(
        refresh_at(now, now + s(2)),
        now + s(2) - Duration::from_millis(200)
    );
}

#[test]
fn a_source_name_is_looked_up_at_start_and_its_address_is_the_trunks() {
    let mut t = T::with_policy(true, &by_name());
    // Before the first answer, the SBC is a stranger (and the name shows no address).
    assert!(!is_trunks(&mut t, SBC_OLD, "early"));
    assert_eq!(shown(&t), [(SBC.to_string(), vec![], None)]);
    // The start's lookup: A only (the listeners are IPv4), never NAPTR or SRV.
    t.tick();
    assert_eq!(asked(&t), ["A sbc.carrier.test"]);
    // The core does not wait for it: meanwhile it answers as before.
    assert!(!is_trunks(&mut t, SBC_OLD, "waiting"));
    t.answer_dns(a_record(SBC, [127, 0, 0, 7], 60));
    assert_eq!(
        shown(&t),
        [(SBC.to_string(), vec!["127.0.0.7".to_string()], None)]
    );
    // Its address is the trunk's, exactly as a listed network: no challenge, the DID
    // routed; another address is not.
    assert!(is_trunks(&mut t, SBC_OLD, "answered"));
    assert!(!is_trunks(&mut t, SBC_NEW, "stranger"));
}

#[test]
fn a_source_name_is_refreshed_before_its_ttl_runs_out_and_follows_the_change() {
    let mut t = T::with_policy(true, &by_name());
    t.tick();
    t.answer_dns(a_record(SBC, [127, 0, 0, 7], 60));
    // Asked again a tenth of the TTL early (54 s), not before.
    run_for(&mut t, 53, &a_record(SBC, [127, 0, 0, 7], 60));
    assert!(t.lookups.is_empty());
    t.advance(1);
    assert_eq!(asked(&t), ["A sbc.carrier.test"]);
    // Until the new answer comes, the old address is still the trunk's.
    assert!(is_trunks(&mut t, SBC_OLD, "refreshing"));
    // The carrier moved its SBC: the new address is the trunk's, the old one no longer.
    t.answer_dns(a_record(SBC, [127, 0, 0, 8], 60));
    assert!(is_trunks(&mut t, SBC_NEW, "moved"));
    assert!(!is_trunks(&mut t, SBC_OLD, "left"));
    assert_eq!(
        shown(&t),
        [(SBC.to_string(), vec!["127.0.0.8".to_string()], None)]
    );
}

#[test]
fn a_failed_refresh_keeps_the_last_addresses_for_a_while_then_drops_them() {
    let mut t = T::with_policy(true, &by_name());
    t.tick();
    t.answer_dns(a_record(SBC, [127, 0, 0, 7], 60));
    let answered = t.now().mono;
    run_for(&mut t, 53, &a_record(SBC, [127, 0, 0, 7], 60));
    // From the refresh on, the name server does not answer.
    t.advance(1);
    t.answer_dns(failing);
    let (name, addresses, error) = shown(&t).remove(0);
    assert_eq!(name, SBC);
    assert_eq!(addresses, ["127.0.0.7"]);
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("no answer from")),
        "{error:?}"
    );
    assert!(is_trunks(&mut t, SBC_OLD, "kept"));
    // Retried (2 s, then doubling), each failing: kept until KEEP_STALE past the TTL.
    let keep_until = answered + Duration::from_secs(60) + KEEP_STALE;
    let mut retries = 0;
    while t.now().mono + Duration::from_secs(2) < keep_until {
        t.advance(1);
        retries += t.lookups.len();
        t.answer_dns(failing);
    }
    assert!(
        (5..=20).contains(&retries),
        "retried {retries} times in five minutes"
    );
    assert!(is_trunks(&mut t, SBC_OLD, "still kept"));
    run_for(&mut t, 3, &failing);
    assert!(!is_trunks(&mut t, SBC_OLD, "dropped"));
    let (_, addresses, error) = shown(&t).remove(0);
    assert!(addresses.is_empty());
    assert!(error.is_some());
    // The name server answers again: the address is the trunk's once more.
    while t.lookups.is_empty() {
        t.advance(1);
    }
    t.answer_dns(a_record(SBC, [127, 0, 0, 7], 60));
    assert!(is_trunks(&mut t, SBC_OLD, "back"));
    assert_eq!(shown(&t)[0].2, None);
}

#[test]
fn a_name_without_address_loses_its_addresses_at_once() {
    let mut t = T::with_policy(true, &by_name());
    t.tick();
    t.answer_dns(a_record(SBC, [127, 0, 0, 7], 60));
    run_for(&mut t, 54, &|_: &Query| Answer::NoRecords {
        ttl: Some(Duration::from_secs(30)),
    });
    assert!(!is_trunks(&mut t, SBC_OLD, "gone"));
    let (_, addresses, error) = shown(&t).remove(0);
    assert!(addresses.is_empty());
    assert_eq!(error.as_deref(), Some("sbc.carrier.test has no address"));
}

#[test]
fn reloads_look_up_the_names_they_bring_and_forget_those_they_drop() {
    // The carrier known by its network: nothing to look up.
    let mut t = T::new(true);
    t.tick();
    assert!(t.lookups.is_empty());
    assert!(!is_trunks(&mut t, SBC_OLD, "before"));
    // A reload names the SBC: looked up at once.
    t.feed(Input::PolicyChanged(snapshot(&by_name())));
    t.pump();
    assert_eq!(asked(&t), ["A sbc.carrier.test"]);
    t.answer_dns(a_record(SBC, [127, 0, 0, 7], 60));
    assert!(is_trunks(&mut t, SBC_OLD, "named"));
    // A reload that keeps the name asks nothing new and keeps its address.
    t.feed(Input::PolicyChanged(snapshot(&by_name())));
    t.pump();
    assert!(t.lookups.is_empty());
    assert!(is_trunks(&mut t, SBC_OLD, "kept"));
    // One that drops it forgets it: its address is a stranger's again, nothing is asked.
    t.feed(Input::PolicyChanged(snapshot(POLICY)));
    t.pump();
    assert!(!is_trunks(&mut t, SBC_OLD, "dropped"));
    assert!(t.core.sources.names().is_empty());
    run_for(&mut t, 120, &a_record(SBC, [127, 0, 0, 7], 60));
    assert!(t.lookups.is_empty());
    // A name dropped while its lookup is under way: the late answer changes nothing.
    t.feed(Input::PolicyChanged(snapshot(&by_name())));
    t.pump();
    assert_eq!(asked(&t), ["A sbc.carrier.test"]);
    t.feed(Input::PolicyChanged(snapshot(POLICY)));
    t.pump();
    t.answer_dns(a_record(SBC, [127, 0, 0, 7], 60));
    assert!(!is_trunks(&mut t, SBC_OLD, "late answer"));
    assert!(t.core.sources.names().is_empty());
}

#[test]
fn a_trunk_may_list_networks_and_names_and_two_trunks_one_name() {
    let policy = by_name()
        .replace(
            &format!("sources = [\"{SBC}\"]"),
            &format!("sources = [\"127.0.0.2/32\", \"{SBC}\", \"gw.carrier.test\"]"),
        )
        .replace(
            "sources = [\"127.0.0.3/32\"]",
            &format!("sources = [\"127.0.0.3/32\", \"{SBC}\"]"),
        );
    let mut t = T::with_policy(true, &policy);
    t.tick();
    let mut questions = asked(&t);
    questions.sort();
    // One lookup a name, however many trunks list it.
    assert_eq!(questions, ["A gw.carrier.test", "A sbc.carrier.test"]);
    t.answer_dns(|q: &Query| match q.name.as_str() {
        "gw.carrier.test" => Answer::Records {
            records: vec![Record::Ip([127, 0, 0, 9].into())],
            ttl: Duration::from_secs(60),
        },
        _ => a_record(SBC, [127, 0, 0, 7], 60)(q),
    });
    assert!(is_trunks(&mut t, CARRIER, "network"));
    assert!(is_trunks(&mut t, SBC_OLD, "sbc"));
    assert!(is_trunks(&mut t, "127.0.0.9:5060", "gw"));
    // The SBC is both trunks'; the first in id order takes it, as with networks.
    let directory = snapshot(&policy);
    let trunk_of = |ip: &str| {
        t.core
            .sources
            .trunk_for(directory.policy(), ip.parse().unwrap())
            .map(|t| t.id.clone())
    };
    assert_eq!(trunk_of("127.0.0.7").as_deref(), Some("authed"));
    assert_eq!(trunk_of("127.0.0.9").as_deref(), Some("carrier"));
    // An IPv4-mapped IPv6 source is the same address.
    assert_eq!(trunk_of("::ffff:127.0.0.9").as_deref(), Some("carrier"));
    assert_eq!(trunk_of("127.0.0.10"), None);
}

/// A phone of ours on the carrier's address (one machine, one NAT): its calls are its own,
/// challenged as any phone's call; the carrier's calls from another port of that address,
/// and calls claiming to be from that user from elsewhere on it, stay the trunk's.
#[test]
fn a_phone_registered_from_a_trunks_address_is_a_phone_not_the_trunk() {
    let mut t = T::with_policy(true, POLICY);
    let phone = "127.0.0.2:5070";
    t.register_authenticated("alice", phone);
    let call = |t: &mut T, from_user: &str, from: &str, id: &str| {
        t.input(from, &invite(from_user, from, "1002", id, ""));
        let out = t.take();
        let first = to(&out, from)
            .into_iter()
            .find(|m| header(m, "Call-ID") == Some(id))
            .unwrap_or_else(|| panic!("nothing back to {from}: {out:?}"));
        first_line(&first).to_string()
    };
    // alice's phone, from where it registered: challenged (then it answers as any phone).
    assert_eq!(
        call(&mut t, "alice", phone, "p1"),
        "SIP/2.0 407 Proxy Authentication Required"
    );
    // The carrier, from its own port: the trunk's, no challenge.
    assert_eq!(
        call(&mut t, "+447700900123", "127.0.0.2:5060", "c1"),
        "SIP/2.0 100 Trying"
    );
    // alice's name from a port she did not register from: the trunk's, as before.
    assert_eq!(
        call(&mut t, "alice", "127.0.0.2:5099", "c2"),
        "SIP/2.0 100 Trying"
    );
}
