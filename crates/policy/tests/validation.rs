//! Loading and validation: every error reported at once, each with file, line, column, key.

use switchboard_policy::{
    Context, Diagnostics, DigestAlgorithm, IncomingHandling, Policy, RingStrategy, Secret, Source,
    Target, TrunkRegistration,
};

fn load(text: &str) -> Result<Policy, Diagnostics> {
    Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: text.into(),
    }])
}

fn errors(text: &str) -> Vec<(usize, usize, String, String)> {
    load(text)
        .expect_err("the policy must be refused")
        .0
        .into_iter()
        .map(|d| (d.line, d.column, d.key, d.message))
        .collect()
}

const USER: &str = "[users.alice]\nextension = \"1001\"\n[users.alice.sip]\npassword = \"pw\"\n";

#[test]
fn example_policy_loads() {
    let p = Policy::from_sources(&[Source {
        name: "config/policy.toml".into(),
        text: include_str!("../../../config/policy.toml").into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.warnings(), [], "the example says what it means");
    let alice = p.user("alice").unwrap();
    assert_eq!(alice.extension, "1001");
    assert_eq!(
        p.team("support").unwrap().strategy,
        RingStrategy::MemoryHunt
    );
    assert_eq!(p.profiles().len(), 11);
    assert_eq!(
        p.profile_by_number(3).unwrap().incoming,
        IncomingHandling::Reject {
            code: 480,
            reason: "In a meeting".into()
        }
    );
    assert_eq!(p.default_profile().id, "available");
    assert_eq!(
        p.did("+441632960000").unwrap().1.target,
        Target::Team("support".into())
    );
    assert!(p.trunk_for_source("127.0.0.1".parse().unwrap()).is_some());
    assert!(p.trunk_for_source("192.0.2.1".parse().unwrap()).is_none());
    assert!(p.trunk("carrier").unwrap().routes("+441234"));
}

#[test]
fn sip_credentials_by_username() {
    let p = load(&format!("{USER}algorithms = [\"md5\"]\n")).unwrap();
    let c = p.sip_credentials("alice").unwrap();
    assert_eq!(c.secret, Secret::Password("pw".into()));
    assert_eq!(c.algorithms, vec![DigestAlgorithm::Md5]);
    assert_eq!(p.sip_user("alice"), Some("alice"));
    assert_eq!(p.user_by_extension("1001").unwrap().id, "alice");
    assert!(p.sip_credentials("bob").is_none());
    let p = load("[users.a]\nextension = \"1\"\n[users.a.sip]\nusername = \"phone-a\"\nha1_md5 = \"0123456789abcdef0123456789ABCDEF\"\nalgorithms = [\"md5\"]\n").unwrap();
    assert_eq!(p.sip_user("phone-a"), Some("a"));
    assert!(
        matches!(p.sip_credentials("phone-a").unwrap().secret, Secret::Ha1 { md5: Some(ref h), sha256: None } if h == "0123456789abcdef0123456789abcdef")
    );
}

#[test]
fn ha1_must_cover_every_allowed_algorithm() {
    let e = errors("[users.a]\nextension = \"1\"\n[users.a.sip]\nha1_md5 = \"0123456789abcdef0123456789abcdef\"\nalgorithms = [\"sha-256\", \"md5\"]\n");
    assert_eq!(e[0].2, "users.a.sip.algorithms");
    assert!(e[0].3.contains("no ha1_sha256"), "{:?}", e);
}

#[test]
fn credentials_must_allow_an_offered_algorithm() {
    let offering = |algs: &[DigestAlgorithm], text: &str| {
        Policy::from_sources_in(
            &[Source {
                name: "p.toml".into(),
                text: text.into(),
            }],
            &Context {
                offered_algorithms: Some(algs.to_vec()),
                ..Default::default()
            },
        )
    };
    let md5 = [DigestAlgorithm::Md5];
    let sha_only = format!("{USER}algorithms = [\"sha-256\"]\n");
    let e = offering(&md5, &sha_only).expect_err("a user who could never authenticate");
    let d = &e.0[0];
    assert_eq!(
        (d.line, d.column, d.key.as_str()),
        (5, 14, "users.alice.sip.algorithms")
    );
    assert!(d.message.contains("[\"md5\"]"), "{}", d.message);
    // Offered, or sharing one with what is offered, or the default (both): fine.
    offering(&[DigestAlgorithm::Sha256, DigestAlgorithm::Md5], &sha_only).unwrap();
    offering(
        &md5,
        &format!("{USER}algorithms = [\"sha-256\", \"md5\"]\n"),
    )
    .unwrap();
    offering(&md5, USER).unwrap();
    offering(&[DigestAlgorithm::Sha256], USER).unwrap();
    // Without a context (the policy alone) nothing is assumed of the config.
    load(&sha_only).unwrap();
}

#[test]
fn password_and_ha1_together_is_an_error() {
    let e = errors("[users.a]\nextension = \"1\"\n[users.a.sip]\npassword = \"x\"\nha1_md5 = \"0123456789abcdef0123456789abcdef\"\n");
    assert_eq!((e[0].0, e[0].2.as_str()), (4, "users.a.sip.password"));
}

#[test]
fn unknown_key_is_positioned() {
    let e = errors("[users.alice]\nextension = \"1001\"\nring_tme = 5\n");
    assert_eq!((e[0].0, e[0].1), (3, 1));
    assert_eq!(e[0].2, "users.alice.ring_tme");
    assert!(e[0].3.contains("unknown field"), "{}", e[0].3);
}

#[test]
fn all_errors_at_once_with_positions() {
    let text = "[users.alice]\nextension = \"1001\"\nno_answer = \"voicemail:nobox\"\n\
                [users.bob]\nextension = \"1001\"\nno_answer = \"team:nosuch\"\n\
                [teams.t]\nmembers = [\"alice\", \"zed\"]\nstrategy = \"spiral\"\n";
    let e = errors(text);
    let keys: Vec<&str> = e.iter().map(|x| x.2.as_str()).collect();
    assert!(keys.contains(&"users.bob.extension"), "{e:?}");
    assert!(keys.contains(&"users.alice.no_answer"), "{e:?}");
    assert!(keys.contains(&"users.bob.no_answer"), "{e:?}");
    assert!(keys.contains(&"teams.t.members[1]"), "{e:?}");
    assert!(keys.contains(&"teams.t.strategy"), "{e:?}");
    let dup = e.iter().find(|x| x.2 == "users.bob.extension").unwrap();
    assert_eq!((dup.0, dup.1), (5, 13));
    assert!(dup.3.contains("already used by user alice"));
    let zed = e.iter().find(|x| x.2 == "teams.t.members[1]").unwrap();
    assert_eq!(zed.3, "unknown user \"zed\"");
    assert_eq!((zed.0, zed.1), (8, 21));
}

#[test]
fn destination_kind_must_match() {
    let e = errors(&format!("{USER}[users.bob]\nextension = \"2\"\nno_answer = \"menu:vm\"\n[destinations.vm]\nkind = \"voicemail\"\nuri = \"sip:vm@127.0.0.1\"\n"));
    assert_eq!(e[0].3, "destination \"vm\" is a voicemail, not a menu");
}

#[test]
fn bad_durations_time_zones_and_dates() {
    let e = errors("[profiles.x]\nnumber = 12\nstandard_length = \"forever\"\n[schedules.s]\ntimezone = \"Mars/Olympus\"\nhours = [\"mon-fri 9-5\"]\nholidays = [\"2026-13-01\"]\n");
    let keys: Vec<&str> = e.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "schedules.s.timezone",
            "schedules.s.hours[0]",
            "schedules.s.holidays[0]",
            "profiles.x.standard_length"
        ]
    );
    assert!(e[0].3.contains("unknown time zone"));
}

#[test]
fn trunk_sources_may_be_host_names() {
    let p = load(
        "[trunks.c]\nsources = [\"192.0.2.0/24\", \"SBC1.Carrier.Example.\", \"sbc2.carrier.example\", \"gw\"]\n\
         [trunks.d]\nsources = [\"sbc1.carrier.example\", \"2001:db8::7\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let c = p.trunk("c").unwrap();
    assert_eq!(c.sources.len(), 1);
    assert_eq!(
        c.source_names,
        ["sbc1.carrier.example", "sbc2.carrier.example", "gw"]
    );
    // Another trunk may name the same host; networks and names keep their kinds.
    let d = p.trunk("d").unwrap();
    assert_eq!(d.source_names, ["sbc1.carrier.example"]);
    assert_eq!(d.sources.len(), 1);
    // A name is a source of its own: the trunk needs nothing else.
    let only = load("[trunks.c]\nsources = [\"sbc.carrier.example\"]\n").unwrap();
    assert!(only.trunk("c").unwrap().sources.is_empty());
    // The policy matches networks only; a name's addresses are the daemon's to find.
    assert!(p.trunk_for_source("192.0.2.9".parse().unwrap()).is_some());
    assert!(p
        .trunk_for_source("198.51.100.1".parse().unwrap())
        .is_none());
}

#[test]
fn host_names_among_trunk_sources_are_bounded() {
    use switchboard_policy::MAX_SOURCE_NAMES;
    let names = |from: usize, n: usize| {
        (from..from + n)
            .map(|i| format!("\"sbc{i}.carrier.example\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A name two trunks share is counted once.
    let at_limit = format!(
        "[trunks.a]\nsources = [{}]\n[trunks.b]\nsources = [{}]\n",
        names(0, MAX_SOURCE_NAMES),
        names(0, 1)
    );
    load(&at_limit).unwrap_or_else(|e| panic!("{e}"));
    let over = format!(
        "[trunks.a]\nsources = [{}]\n[trunks.b]\nsources = [\"127.0.0.1\", {}]\n",
        names(0, MAX_SOURCE_NAMES),
        names(MAX_SOURCE_NAMES, 1)
    );
    let errs = errors(&over);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].2, "trunks.b.sources[1]");
    assert!(errs[0].3.contains("at most 64 host names"), "{errs:?}");
}

#[test]
fn duplicate_dids_across_trunks() {
    let e = errors("[trunks.a]\nsources = [\"127.0.0.1\"]\ndids = { \"+1\" = \"hangup\" }\n[trunks.b]\nsources = [\"127.0.0.2\"]\ndids = { \"+1\" = \"hangup\" }\n");
    assert_eq!(e[0].2, "trunks.b.dids.\"+1\"");
    assert!(e[0].3.contains("already routed"));
}

#[test]
fn a_trunk_account_is_our_account_at_the_carrier() {
    let p = load(
        "[trunks.c]\nsources = [\"192.0.2.1\"]\nuri = \"sip:192.0.2.1\"\noutbound = [\"+44*\"]\n\
         [trunks.c.account]\nusername = \"441632960000\"\npassword = \"s3cret\"\n\
         auth_username = \"acct-7\"\nrealm = \"carrier.example\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t = p.trunk("c").unwrap();
    assert!(
        t.credentials.is_none(),
        "[trunks.c.sip] is the inbound direction"
    );
    let a = t.account.as_ref().unwrap();
    assert_eq!(a.username, "441632960000");
    assert_eq!(a.digest_username(), "acct-7");
    assert!(a.answers_realm("carrier.example"));
    assert!(!a.answers_realm("elsewhere"));
    assert!(!format!("{a:?}").contains("s3cret"), "{a:?}");
    // Without auth_username and realm: the account's user name, any realm.
    let p = load(
        "[trunks.c]\nsources = [\"192.0.2.1\"]\nuri = \"sip:192.0.2.1\"\n\
         [trunks.c.account]\nusername = \"u\"\npassword = \"p\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = p.trunk("c").unwrap().account.clone().unwrap();
    assert_eq!(a.digest_username(), "u");
    assert!(a.answers_realm("anything"));
}

#[test]
fn a_trunk_account_that_registers() {
    // Defaults: the registrar is the uri's host (port and transport kept, user dropped),
    // an hour, the trunk's id as contact user; no sources needed.
    let p = load(
        "[trunks.c]\nuri = \"sip:carrier@192.0.2.1:5080;transport=tcp;lr\"\n\
         [trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = p.trunk("c").unwrap().account.clone().unwrap().registration;
    assert_eq!(
        r,
        Some(TrunkRegistration {
            registrar: "sip:192.0.2.1:5080;transport=tcp".into(),
            domain: "192.0.2.1".into(),
            expires: 3600,
            contact_user: "c".into(),
        })
    );
    // Everything given; no uri (registration only: calls come in to the contact).
    let p = load(
        "[trunks.c]\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\n\
         registrar = \"sip:registrar.carrier.example\"\nexpires = 600\ncontact_user = \"pbx-7\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t = p.trunk("c").unwrap();
    assert!(t.uri.is_none());
    let r = t.account.clone().unwrap().registration.unwrap();
    assert_eq!(r.registrar, "sip:registrar.carrier.example");
    assert_eq!(r.domain, "registrar.carrier.example");
    assert_eq!((r.expires, r.contact_user.as_str()), (600, "pbx-7"));
    // IPv6: the domain keeps its brackets.
    let p = load(
        "[trunks.c]\nuri = \"sip:[2001:db8::1]:5080\"\n\
         [trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = p.trunk("c").unwrap().account.clone().unwrap().registration;
    assert_eq!(r.unwrap().domain, "[2001:db8::1]");
    // register = false (the default): no registration.
    let p = load(
        "[trunks.c]\nsources = [\"192.0.2.1\"]\nuri = \"sip:192.0.2.1\"\n\
         [trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = false\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(p
        .trunk("c")
        .unwrap()
        .account
        .clone()
        .unwrap()
        .registration
        .is_none());
}

#[test]
fn contact_users_are_unique_and_name_no_user() {
    let account = |id: &str, contact: &str| {
        format!(
            "[trunks.{id}]\nuri = \"sip:192.0.2.1\"\n[trunks.{id}.account]\nusername = \"u\"\n\
             password = \"p\"\nregister = true\n{contact}"
        )
    };
    let e = errors(&format!(
        "{}{}",
        account("a", ""),
        account("b", "contact_user = \"a\"\n")
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].0, e[0].2.as_str()),
        (13, "trunks.b.account.contact_user")
    );
    assert!(
        e[0].3.contains("contact user a is already used by trunk a"),
        "{e:?}"
    );
    // A user's id, SIP user name or extension: calls to it would be ambiguous.
    for contact in ["alice", "1001"] {
        let e = errors(&format!(
            "{USER}{}",
            account("c", &format!("contact_user = \"{contact}\"\n"))
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].2, "trunks.c.account.contact_user");
        assert!(e[0].3.contains("also names user alice"), "{e:?}");
    }
    // A trunk id that cannot be a contact user must be given one.
    let e = errors(&account("\"a b\"", ""));
    assert_eq!(e[0].2, "trunks.a b.account.contact_user");
    assert!(e[0].3.contains("give contact_user"), "{e:?}");
}

#[test]
fn no_answer_loop_is_refused() {
    let e = errors("[users.a]\nextension = \"1\"\nno_answer = \"user:b\"\n[users.b]\nextension = \"2\"\nno_answer = \"user:a\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].3.starts_with("routing loop: "), "{e:?}");
}

#[test]
fn team_user_forward_team_loop_is_refused() {
    let e = errors("[users.a]\nextension = \"1\"\n[users.a.forwarding]\ntargets = [\"team:t\"]\n[teams.t]\nmembers = [\"a\"]\n");
    assert!(e[0].3.contains("routing loop"), "{e:?}");
    // Direct-calls-only forwarding does not apply to team calls: no loop.
    load("[users.a]\nextension = \"1\"\n[users.a.forwarding]\ntargets = [\"team:t\"]\ndirect_calls_only = true\n[teams.t]\nmembers = [\"a\"]\n").unwrap();
}

#[test]
fn several_files_merge_and_refer_to_each_other() {
    let p = Policy::from_sources(&[
        Source {
            name: "teams.toml".into(),
            text: "[teams.t]\nmembers = [\"alice\"]\n".into(),
        },
        Source {
            name: "users.toml".into(),
            text: USER.into(),
        },
    ])
    .unwrap();
    assert_eq!(p.team("t").unwrap().members, vec!["alice"]);
    let e = Policy::from_sources(&[
        Source {
            name: "a.toml".into(),
            text: USER.into(),
        },
        Source {
            name: "b.toml".into(),
            text: USER.into(),
        },
    ])
    .unwrap_err();
    assert_eq!(e.0[0].file, "b.toml");
}

#[test]
fn profile_numbers_are_unique_and_new_profiles_need_one() {
    let e = errors("[profiles.a]\nnumber = 3\n[profiles.b]\nname = \"B\"\n");
    let keys: Vec<&str> = e.iter().map(|x| x.2.as_str()).collect();
    assert!(keys.contains(&"profiles.a.number"), "{e:?}");
    assert!(keys.contains(&"profiles.b.number"), "{e:?}");
}

#[test]
fn diagnostics_read_like_a_compiler() {
    let e = load("[users.alice]\nextension = \"x1\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "error: extension \"x1\" must be digits\n  --> p.toml:2:13 (key users.alice.extension)"
        ),
        "{e}"
    );
}

/// The warnings of a valid policy: (line, key, message).
fn warnings(text: &str) -> Vec<(usize, String, String)> {
    let p = load(text).unwrap_or_else(|e| panic!("{e}"));
    p.warnings()
        .iter()
        .inspect(|d| assert_eq!(d.severity, switchboard_policy::Severity::Warning))
        .map(|d| (d.line, d.key.clone(), d.message.clone()))
        .collect()
}

/// Four users who can register, and team `t` of them with `settings`.
fn team_of_four(settings: &str) -> String {
    let mut text = String::new();
    for (i, u) in ["a", "b", "c", "d"].iter().enumerate() {
        text.push_str(&format!(
            "[users.{u}]\nextension = \"10{i:02}\"\n[users.{u}.sip]\npassword = \"pw\"\n"
        ));
    }
    text.push_str(&format!(
        "[teams.t]\nmembers = [\"a\", \"b\", \"c\", \"d\"]\n{settings}"
    ));
    text
}

#[test]
fn a_hunt_that_ends_before_every_member_rang_is_warned_of() {
    // Line 21 of the text: the team's ring_time.
    let w = warnings(&team_of_four(
        "strategy = \"hunt\"\nmember_ring_time = 15\nring_time = 30\n",
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!((w[0].0, w[0].1.as_str()), (21, "teams.t.ring_time"));
    assert!(
        w[0].2.contains("only 2 of the 4 members ring") && w[0].2.contains("raise ring_time to 60"),
        "{}",
        w[0].2
    );
    // Every hunting strategy; a cumulative team whose last members join too late.
    for s in [
        "memory_hunt",
        "round_robin",
        "random",
        "least_recent",
        "first_available",
    ] {
        let w = warnings(&team_of_four(&format!(
            "strategy = \"{s}\"\nmember_ring_time = 20\nring_time = 45\n"
        )));
        assert!(w[0].2.contains("only 3 of the 4"), "{s}: {w:?}");
    }
    let w = warnings(&team_of_four(
        "strategy = \"cumulative\"\nmember_ring_time = 10\nring_time = 20\n",
    ));
    assert!(
        w[0].2.contains("only 2 of the 4 members have joined"),
        "{w:?}"
    );
    // Enough time, or everyone at once: nothing to say.
    for settings in [
        "strategy = \"hunt\"\nmember_ring_time = 15\nring_time = 60\n",
        "strategy = \"ring_all\"\nmember_ring_time = 15\nring_time = 20\n",
        "strategy = \"cumulative\"\nmember_ring_time = 10\nring_time = 31\n",
    ] {
        assert_eq!(warnings(&team_of_four(settings)), [], "{settings}");
    }
}

#[test]
fn a_member_who_can_never_ring_is_warned_of() {
    let text = format!(
        "{USER}[users.bob]\nextension = \"1002\"\n\
         [users.carol]\nextension = \"1003\"\n\
         [users.carol.forwarding]\nenabled = true\ntargets = [\"number:+447700900001\"]\n\
         [users.dave]\nextension = \"1004\"\n\
         [users.dave.forwarding]\nenabled = true\ntargets = [\"number:+447700900002\"]\n\
         direct_calls_only = true\n\
         [teams.t]\nmembers = [\"alice\", \"bob\", \"carol\", \"dave\"]\n"
    );
    let w = warnings(&text);
    let keys: Vec<&str> = w.iter().map(|w| w.1.as_str()).collect();
    // bob has no SIP account; dave forwards direct calls only; carol's forwarding rings
    // for team calls too; alice has a phone.
    assert_eq!(keys, ["teams.t.members[1]", "teams.t.members[3]"], "{w:?}");
    assert!(
        w[0].2.starts_with("bob can never ring in a team call"),
        "{w:?}"
    );
    assert_eq!(w[0].0, 19);
}

#[test]
fn a_trunk_with_no_outbound_numbers_is_warned_of() {
    let text = format!(
        "{USER}[trunks.out]\nsources = [\"192.0.2.1/32\"]\nuri = \"sip:192.0.2.1\"\n\
         [trunks.inbound]\nsources = [\"192.0.2.2/32\"]\ndids = {{ \"+441632960000\" = \"user:alice\" }}\n\
         [trunks.both]\nsources = [\"192.0.2.3/32\"]\nuri = \"sip:192.0.2.3\"\noutbound = [\"+44*\"]\n"
    );
    let w = warnings(&text);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!((w[0].0, w[0].1.as_str()), (5, "trunks.out.outbound"));
    assert!(w[0].2.ends_with("so its uri is never used"), "{w:?}");
    assert_eq!((w[1].0, w[1].1.as_str()), (8, "trunks.inbound.outbound"));
    assert!(w[1].2.ends_with("so it carries calls in only"), "{w:?}");
}

#[test]
fn warnings_do_not_refuse_a_policy_and_are_said_as_warnings() {
    let p = load(&team_of_four(
        "strategy = \"hunt\"\nmember_ring_time = 15\nring_time = 30\n",
    ))
    .unwrap();
    let text = p.warnings()[0].to_string();
    assert!(text.starts_with("warning: with strategy hunt"), "{text}");
    assert!(
        text.contains("--> p.toml:21:13 (key teams.t.ring_time)"),
        "{text}"
    );
}

#[test]
fn a_forwarding_message_must_name_a_prompt_the_daemon_has() {
    let text = "[users.a]\nextension = \"100\"\n[users.a.forwarding]\ntargets = [\"number:+15550100\"]\nmessage = \"welcome\"\n";
    let load = |names: &[&str]| {
        Policy::from_sources_in(
            &[Source {
                name: "p.toml".into(),
                text: text.into(),
            }],
            &Context {
                prompts: Some(names.iter().map(|n| n.to_string()).collect()),
                ..Default::default()
            },
        )
    };
    let e = load(&["phrases/goodbye"]).expect_err("no prompt named welcome");
    let d = &e.0[0];
    assert_eq!(
        (d.line, d.column, d.key.as_str()),
        (5, 11, "users.a.forwarding.message")
    );
    assert!(
        d.message.contains("no prompt is named \"welcome\""),
        "{}",
        d.message
    );
    assert!(load(&["messages/welcome"]).is_ok());
    assert!(load(&["phrases/welcome"]).is_ok());
    // Without the daemon's prompts (no [media]), any name is taken.
    assert!(Policy::from_sources(&[Source {
        name: "p.toml".into(),
        text: text.into(),
    }])
    .is_ok());
}

#[test]
fn missed_call_email_needs_a_well_formed_address() {
    let user = |extra: &str| format!("[users.alice]\nextension = \"1001\"\n{extra}");
    let p = load(&user(
        "email = \"alice@example.com\"\nmissed_call_email = \"teams\"\n",
    ))
    .unwrap();
    let alice = p.user("alice").unwrap();
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
    assert_eq!(
        alice.missed_call_email,
        switchboard_policy::MissedCallEmail::Teams
    );
    let p = load(&user("")).unwrap();
    assert_eq!(
        p.user("alice").unwrap().missed_call_email,
        switchboard_policy::MissedCallEmail::Disabled
    );
    // "disabled" needs no address.
    load(&user("missed_call_email = \"disabled\"\n")).unwrap();
    let e = errors(&user("missed_call_email = \"all\"\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].0, e[0].2.as_str()),
        (3, "users.alice.missed_call_email")
    );
    assert!(e[0].3.contains("needs an email address"), "{e:?}");
    let e = errors(&user(
        "email = \"a@b.c\"\nmissed_call_email = \"sometimes\"\n",
    ));
    assert!(
        e[0].3.contains("not one of disabled, all, direct, teams"),
        "{e:?}"
    );
    for bad in [
        "alice",
        "a@",
        "@b",
        "a b@c",
        "a@b@c",
        "a@b\\r\\nBcc: x@y",
        "<a@b>",
        "a@.b",
    ] {
        let e = errors(&user(&format!("email = \"{bad}\"\n")));
        assert_eq!(e[0].2, "users.alice.email", "{bad}: {e:?}");
    }
}
