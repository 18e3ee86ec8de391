//! A node among several sharing their state: what it tells the others of its calls, and
//! how it takes what they changed (the core alone, with a virtual clock; the store and the
//! feed are tested against Redis in the store crate, the whole in tests/cluster_e2e.rs).

use super::{CoreConfig, Input};
use crate::test_harness::*;
use switchboard_presence::model::CallStatus;
use switchboard_sip::registrar::Binding;
use switchboard_store::tables::{
    binding_key, call_status_key, AUTH_ATTEMPTS, BINDINGS, CALL_STATUS, MEMORY, NODES,
};
use switchboard_store::{FeedEvent, Shard, Write};

fn node(name: &str) -> T {
    node_auth(name, false)
}

fn node_auth(name: &str, auth: bool) -> T {
    let config = CoreConfig {
        node: Some(name.into()),
        node_hop: Some(format!("sip:{name}.nodes.example:5060")),
        ..config(auth)
    };
    let net = Net {
        listeners: default_listeners(),
        interfaces: None,
    };
    T::with_config(config, net, POLICY)
}

fn status(s: CallStatus) -> Vec<u8> {
    serde_json::to_vec(&s).unwrap()
}

#[test]
fn a_node_tells_the_others_who_rings_and_who_is_in_a_call_through_it_once_per_change() {
    let mut t = node("a");
    t.register("carol", CAROL);
    t.input(ALICE, &invite("alice", ALICE, "1003", "s1", ""));
    let out = t.take();
    let branch = to(&out, CAROL)[0].clone();
    t.input(CAROL, &answer(&branch, 180, "c", CAROL));
    t.input(CAROL, &answer(&branch, 200, "c", CAROL));
    let ok = to(&t.take(), ALICE).pop().unwrap();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let told: Vec<(String, Option<CallStatus>)> = std::mem::take(&mut t.shared)
        .into_iter()
        .map(|w| {
            assert_eq!(w.table, CALL_STATUS);
            (w.key, w.value.map(|v| serde_json::from_slice(&v).unwrap()))
        })
        .collect();
    let carol = call_status_key("a", "carol");
    let alice = call_status_key("a", "alice");
    assert!(
        told.contains(&(carol.clone(), Some(CallStatus::Ringing))),
        "{told:?}"
    );
    assert_eq!(
        told.iter().rev().find(|(k, _)| *k == carol),
        Some(&(carol.clone(), Some(CallStatus::Busy))),
        "{told:?}"
    );
    assert!(
        told.contains(&(alice.clone(), Some(CallStatus::Ringing))),
        "{told:?}"
    );
    // The 180 changed nothing the others see once ringing was told: no second row.
    assert_eq!(
        told.iter()
            .filter(|(k, v)| *k == carol && *v == Some(CallStatus::Ringing))
            .count(),
        1
    );
    // The call ends: both are free again (their rows deleted).
    t.input(
        ALICE,
        &in_dialog("BYE", "carol@127.0.0.1:5074", &ok, ALICE, 2),
    );
    t.take();
    let told: Vec<Write> = std::mem::take(&mut t.shared);
    assert!(
        told.contains(&Write::delete(CALL_STATUS, carol)),
        "{told:?}"
    );
    assert!(
        told.contains(&Write::delete(CALL_STATUS, alice)),
        "{told:?}"
    );
}

#[test]
fn a_node_alone_tells_nobody() {
    let mut t = T::new(false);
    t.register("carol", CAROL);
    t.input(ALICE, &invite("alice", ALICE, "1003", "s1", ""));
    t.take();
    assert!(t.shared.is_empty());
    assert!(!t.outputs.iter().any(|o| o.starts_with("Share")));
}

#[test]
fn another_nodes_call_makes_the_callee_busy_here_and_its_own_rows_are_not_taken() {
    let mut t = node("a");
    t.register("carol", CAROL);
    t.feed(Input::Shared(FeedEvent::Changes(vec![
        Write::put(
            CALL_STATUS,
            call_status_key("b", "carol"),
            status(CallStatus::Busy),
        ),
        // This node's own row (an earlier run's): not taken.
        Write::put(
            CALL_STATUS,
            call_status_key("a", "bob"),
            status(CallStatus::Busy),
        ),
    ])));
    assert!(t.core.presence().model().in_call("carol"));
    assert!(!t.core.presence().model().in_call("bob"));
    // carol has no call waiting: a call through this node finds her engaged.
    t.input(BOB, &invite("bob", BOB, "1003", "w2", ""));
    let out = t.take();
    assert!(to(&out, CAROL).is_empty(), "{out:?}");
    assert_eq!(
        first_line(to(&out, BOB).last().unwrap()),
        "SIP/2.0 486 Busy Here"
    );
    // b says she is free again (or b is gone and its rows removed).
    t.feed(Input::Shared(FeedEvent::Changes(vec![Write::delete(
        CALL_STATUS,
        call_status_key("b", "carol"),
    )])));
    assert!(!t.core.presence().model().in_call("carol"));
    // Nothing heard from elsewhere is told again.
    assert!(t.shared.is_empty(), "{:?}", t.shared);
}

#[test]
fn a_binding_taken_by_another_node_is_rung_from_here_and_a_resync_drops_what_is_gone() {
    let mut t = node("a");
    let mut b = node("b");
    // bob's phone registers with b; b stores the binding; a hears of it.
    b.register("bob", BOB);
    let row = b
        .persisted
        .iter()
        .rev()
        .find(|w| w.table == BINDINGS)
        .cloned()
        .expect("b stored bob's binding");
    t.feed(Input::Shared(FeedEvent::Changes(vec![row.clone()])));
    let unix = t.now().unix;
    let held = t.core.registrations(Some("bob"), unix);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].local, None, "b's address is not a's to send from");
    t.input(ALICE, &invite("alice", ALICE, "1002", "x1", ""));
    let out = t.take();
    assert_eq!(
        first_line(&to(&out, BOB)[0]),
        "INVITE sip:bob@127.0.0.1:5072 SIP/2.0"
    );
    assert_eq!(row.key, binding_key("bob", &held[0].key()));
    // A resync without bob's binding (it lapsed while a was away): a drops it; group
    // memory comes as it stands.
    let remembered = switchboard_policy::GroupMemory {
        last_answerer: Some("carol".into()),
        ..Default::default()
    };
    let memory = serde_json::to_vec(&remembered).unwrap();
    t.feed(Input::Shared(FeedEvent::Resync {
        shard: Shard::WHOLE,
        tables: vec![
            (BINDINGS, Vec::new()),
            (MEMORY, vec![("support".into(), memory)]),
        ],
    }));
    assert!(t.core.registrations(Some("bob"), unix).is_empty());
    assert_eq!(t.core.calls().memory("support"), Some(&remembered));
}

#[test]
fn a_resync_of_one_shard_drops_only_that_shards_rows() {
    let mut t = node("a");
    let mut b = node("b");
    b.register("bob", BOB);
    b.register("carol", CAROL);
    let rows: Vec<Write> = b
        .persisted
        .iter()
        .filter(|w| w.table == BINDINGS)
        .cloned()
        .collect();
    t.feed(Input::Shared(FeedEvent::Changes(rows)));
    let unix = t.now().unix;
    // A layout in which bob's and carol's rows are in different shards.
    let count = (2..=64)
        .find(|&n| Shard::of("bob", n) != Shard::of("carol", n))
        .unwrap();
    // bob's shard read again without his binding: his goes, carol's stays.
    t.feed(Input::Shared(FeedEvent::Resync {
        shard: Shard::of("bob", count),
        tables: vec![(BINDINGS, Vec::new())],
    }));
    assert!(t.core.registrations(Some("bob"), unix).is_empty());
    assert_eq!(t.core.registrations(Some("carol"), unix).len(), 1);
}

#[test]
fn failures_as_a_user_count_at_every_node_and_a_success_after_them_is_told() {
    let mut a = node_auth("a", true);
    // A wrong password here: told to the others.
    let r = a.register_with_password("alice", ALICE, "wrong");
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    assert_eq!(
        std::mem::take(&mut a.shared),
        vec![Write::put(AUTH_ATTEMPTS, "alice", b"failed".to_vec())]
    );
    // The right one after it: the count starts over, here and there.
    a.register_authenticated("alice", ALICE);
    assert_eq!(
        std::mem::take(&mut a.shared),
        vec![Write::put(AUTH_ATTEMPTS, "alice", b"proved".to_vec())]
    );
    // Another success with nothing counted is not worth telling.
    a.register_authenticated("alice", ALICE);
    assert!(a.shared.is_empty(), "{:?}", a.shared);

    // Three failures as bob elsewhere (the limit is 3): bob is blocked here too, right
    // password or not, from an address he never proved himself from.
    let failed = || Write::put(AUTH_ATTEMPTS, "bob", b"failed".to_vec());
    a.feed(Input::Shared(FeedEvent::Changes(vec![
        failed(),
        failed(),
        failed(),
    ])));
    let r = a.register_with_password("bob", BOB, "pw");
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    assert!(r.contains("too many failed attempts"), "{r}");
    // Nothing heard from elsewhere is told again.
    assert!(a.shared.is_empty(), "{:?}", a.shared);
    // At a node where bob's count stands at two, he proves himself elsewhere: his count
    // starts over there, so one more failure does not block him.
    let mut c = node_auth("c", true);
    c.feed(Input::Shared(FeedEvent::Changes(vec![failed(), failed()])));
    c.feed(Input::Shared(FeedEvent::Changes(vec![Write::put(
        AUTH_ATTEMPTS,
        "bob",
        b"proved".to_vec(),
    )])));
    c.feed(Input::Shared(FeedEvent::Changes(vec![failed()])));
    let r = c.register_with_password("bob", BOB, "pw");
    assert!(
        r.starts_with("SIP/2.0 200"),
        "one failure since the success: {r}"
    );
}

#[test]
fn a_call_to_a_phone_only_another_nodes_connection_reaches_goes_through_that_node() {
    use switchboard_sip::peer::Peer;
    // bob's phone registered with b over TCP; a hears of the binding.
    let mut b = node("b");
    b.register_from("bob", Peer::tcp(addr(BOB), 7));
    let row = b
        .persisted
        .iter()
        .rev()
        .find(|w| w.table == BINDINGS)
        .cloned()
        .unwrap();
    let stored: switchboard_sip::registrar::Binding =
        serde_json::from_slice(row.value.as_ref().unwrap()).unwrap();
    let owner = stored.owner.clone().unwrap();
    assert_eq!(owner.node, "b");
    assert_eq!(owner.hop.as_deref(), Some("sip:b.nodes.example:5060"));
    let mut a = node("a");
    let b_addr = "127.0.0.9:5060";
    let at_b = Binding {
        owner: Some(Box::new(switchboard_sip::registrar::FlowOwner {
            hop: Some(format!("sip:{b_addr}")),
            ..*owner
        })),
        ..stored
    };
    let row_for_a = Write::put(BINDINGS, row.key, serde_json::to_vec(&at_b).unwrap());
    a.feed(Input::Shared(FeedEvent::Changes(vec![row_for_a.clone()])));
    // alice's call to bob at a: the INVITE goes to b, with a Route naming b that carries
    // the call's token.
    a.input(ALICE, &invite("alice", ALICE, "1002", "h1", ""));
    let out = a.take();
    let branch = &to(&out, b_addr)[0];
    assert_eq!(
        first_line(branch),
        "INVITE sip:bob@127.0.0.1:5072;transport=tcp SIP/2.0"
    );
    let token = switchboard_sip::proxy::route_token(&[9; 32], "h1");
    assert_eq!(
        header(branch, "Route"),
        Some(format!("<sip:{b_addr};lr;sbt={token}>").as_str())
    );
    assert!(
        to(&out, BOB).is_empty(),
        "a has no connection to bob's phone"
    );

    // Were b gone, a would not try through it.
    let mut gone = node("a");
    gone.feed(Input::Shared(FeedEvent::Changes(vec![
        row_for_a.clone(),
        Write::put(NODES, "b", b"gone".to_vec()),
    ])));
    gone.input(ALICE, &invite("alice", ALICE, "1002", "h9", ""));
    let out = gone.take();
    assert!(to(&out, b_addr).is_empty(), "{out:?}");
    // …until it is back.
    gone.feed(Input::Shared(FeedEvent::Changes(vec![Write::put(
        NODES,
        "b",
        b"back".to_vec(),
    )])));
    gone.input(ALICE, &invite("alice", ALICE, "1002", "h10", ""));
    let out = gone.take();
    assert!(!to(&out, b_addr).is_empty(), "{out:?}");

    // At b, that INVITE goes on over bob's connection, b in its dialog.
    let hop = branch.replace(&format!("sip:{b_addr};lr"), "sip:127.0.0.1:5060;lr");
    b.take();
    b.input("127.0.0.9:5060", &hop);
    let out = b.take();
    let relayed = &to(&out, BOB)
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("{out:?}\n{hop}"));
    assert_eq!(
        first_line(relayed),
        "INVITE sip:bob@127.0.0.1:5072;transport=tcp SIP/2.0"
    );
    assert!(header(relayed, "Route").is_none(), "{relayed}");
    let rr = header(relayed, "Record-Route").unwrap();
    assert!(
        rr.starts_with(&format!(
            "<sip:127.0.0.1:5060;transport=tcp;lr;sbt={token}>"
        )),
        "{rr}"
    );
    // A hop to a contact not registered at b: refused, never relayed. (Answered where its
    // Via says: a's address, which in this test is b's own.)
    let elsewhere = hop
        .replace(
            "sip:bob@127.0.0.1:5072;transport=tcp",
            "sip:x@192.0.2.1:5060",
        )
        .replace(";branch=z9hG4bK", ";branch=z9hG4bKx");
    b.input("127.0.0.9:5060", &elsewhere);
    let out = b.take();
    let refusal = "\"no phone registered at this node there\"";
    assert!(
        out.iter()
            .any(|(_, m)| m.starts_with("SIP/2.0 404") && m.contains(refusal)),
        "{out:?}"
    );
    assert!(to(&out, "192.0.2.1:5060").is_empty());
    // Without the call's token it is no hop: taken as any call from anyone would be.
    let forged = elsewhere
        .replace(&token, "0000000000000000")
        .replace(";branch=z9hG4bKx", ";branch=z9hG4bKy");
    b.input("127.0.0.9:5060", &forged);
    let out = b.take();
    assert!(out.iter().all(|(_, m)| !m.contains(refusal)), "{out:?}");
    assert!(
        to(&out, "192.0.2.1:5060")
            .iter()
            .all(|m| !m.contains(&token)),
        "{out:?}"
    );
}
