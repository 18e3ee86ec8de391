//! One case per validation error: the policy text, and the line, column, key and message
//! the operator is shown.

use switchboard_policy::{Policy, Source};

const BASE: &str = "[destinations.vm]\nkind = \"voicemail\"\nuri = \"sip:vm@127.0.0.1\"\n";

struct Case {
    name: &'static str,
    text: &'static str,
    line: usize,
    column: usize,
    key: &'static str,
    message: &'static str,
}

const CASES: &[Case] = &[
    Case { name: "answered announcement rings a user next", text: "[users.a]\nextension = \"1\"\n[destinations.closed]\nkind = \"announcement\"\nmessage = \"m\"\nanswer = true\nnext = \"user:a\"\n", line: 7, column: 8, key: "destinations.closed.next", message: "after an answered message the call can only go to another message of the daemon's own, or hangup: user:a would need the answered call bridged to it" },
    Case { name: "answered announcement leads to a menu", text: "[users.a]\nextension = \"1\"\n[destinations.m]\nkind = \"menu\"\nprompt = \"m\"\noptions = { \"1\" = \"user:a\" }\n[destinations.closed]\nkind = \"announcement\"\nmessage = \"m\"\nanswer = true\nnext = \"menu:m\"\n", line: 11, column: 8, key: "destinations.closed.next", message: "after an answered message the call can only go to another message of the daemon's own, or hangup: menu:m (the daemon's menus play before the answer: their keys ring people) would need the answered call bridged to it" },
    Case { name: "answered announcement goes to a media server next", text: "[destinations.closed]\nkind = \"announcement\"\nmessage = \"m\"\nanswer = true\nnext = \"voicemail:vm\"\n", line: 5, column: 8, key: "destinations.closed.next", message: "voicemail:vm would need the answered call bridged" },
    Case { name: "next and code together", text: "[destinations.closed]\nkind = \"announcement\"\nmessage = \"m\"\ncode = 486\nnext = \"hangup\"\n", line: 5, column: 8, key: "destinations.closed.next", message: "either ends the call with code or goes on to next, not both" },
    Case { name: "answer without message", text: "[destinations.closed]\nkind = \"announcement\"\nuri = \"sip:a@127.0.0.1\"\nanswer = true\n", line: 4, column: 10, key: "destinations.closed.answer", message: "answer is for the daemon's own message: only with message" },
    Case { name: "unknown field", text: "[users.a]\nextension = \"1\"\ncolour = 1\n", line: 3, column: 1, key: "users.a.colour", message: "unknown field `colour`" },
    Case { name: "wrong type", text: "[users.a]\nextension = \"1\"\nring_time = \"long\"\n", line: 3, column: 13, key: "users.a.ring_time", message: "invalid type" },
    Case { name: "ring time out of range", text: "[users.a]\nextension = \"1\"\nring_time = 9000\n", line: 3, column: 13, key: "users.a.ring_time", message: "9000 seconds is out of range: use 0 to 600" },
    Case { name: "extension not digits", text: "[users.a]\nextension = \"1x\"\n", line: 2, column: 13, key: "users.a.extension", message: "extension \"1x\" must be digits" },
    Case { name: "duplicate extension", text: "[users.a]\nextension = \"1\"\n[teams.t]\nextension = \"1\"\nmembers = [\"a\"]\n", line: 4, column: 13, key: "teams.t.extension", message: "extension 1 is already used by user a" },
    Case { name: "bad target form", text: "[users.a]\nextension = \"1\"\nno_answer = \"mailbox\"\n", line: 3, column: 13, key: "users.a.no_answer", message: "is not a destination" },
    Case { name: "voicemail alone where nobody owns it", text: "[users.a]\nextension = \"1\"\n[destinations.m]\nkind = \"menu\"\nprompt = \"x\"\noptions = { \"1\" = \"voicemail\" }\n", line: 6, column: 19, key: "destinations.m.options.1", message: "name the mailbox, voicemail:ID" },
    Case { name: "unknown destination kind", text: "[users.a]\nextension = \"1\"\nno_answer = \"fax:x\"\n", line: 3, column: 13, key: "users.a.no_answer", message: "unknown destination kind \"fax\"" },
    Case { name: "bad number", text: "[users.a]\nextension = \"1\"\nno_answer = \"number:12a\"\n", line: 3, column: 13, key: "users.a.no_answer", message: "is not a phone number" },
    Case { name: "unknown user", text: "[users.a]\nextension = \"1\"\nno_answer = \"user:zz\"\n", line: 3, column: 13, key: "users.a.no_answer", message: "unknown user \"zz\"" },
    Case { name: "unknown team", text: "[users.a]\nextension = \"1\"\nbusy = \"team:zz\"\n", line: 3, column: 8, key: "users.a.busy", message: "unknown team \"zz\"" },
    Case { name: "unknown destination", text: "[users.a]\nextension = \"1\"\nout_of_hours = \"voicemail:zz\"\n", line: 3, column: 16, key: "users.a.out_of_hours", message: "unknown destination \"zz\"" },
    Case { name: "destination of the wrong kind", text: "[users.a]\nextension = \"1\"\nno_answer = \"queue:vm\"\n", line: 3, column: 13, key: "users.a.no_answer", message: "destination \"vm\" is a voicemail, not a queue" },
    Case { name: "unknown schedule", text: "[users.a]\nextension = \"1\"\nschedule = \"nine-to-five\"\n", line: 3, column: 12, key: "users.a.schedule", message: "unknown schedule \"nine-to-five\"" },
    Case { name: "unknown profile", text: "[users.a]\nextension = \"1\"\nprofile_caller_ids = { napping = \"+1\" }\n", line: 3, column: 24, key: "users.a.profile_caller_ids.napping", message: "unknown profile \"napping\"" },
    Case { name: "no secret", text: "[users.a]\nextension = \"1\"\n[users.a.sip]\nalgorithms = [\"md5\"]\n", line: 1, column: 1, key: "users.a.sip", message: "give a password, or ha1_md5 / ha1_sha256" },
    Case { name: "unknown algorithm", text: "[users.a]\nextension = \"1\"\n[users.a.sip]\npassword = \"p\"\nalgorithms = [\"sha-1\"]\n", line: 5, column: 15, key: "users.a.sip.algorithms[0]", message: "unknown digest algorithm \"sha-1\"" },
    Case { name: "bad HA1", text: "[users.a]\nextension = \"1\"\n[users.a.sip]\nha1_md5 = \"abc\"\nalgorithms = [\"md5\"]\n", line: 4, column: 11, key: "users.a.sip.ha1_md5", message: "an MD5 HA1 is 32 hex digits" },
    Case { name: "bad SIP user name", text: "[users.a]\nextension = \"1\"\n[users.a.sip]\nusername = \"a b\"\npassword = \"p\"\n", line: 4, column: 12, key: "users.a.sip.username", message: "is not a usable SIP user name" },
    Case { name: "duplicate SIP user name", text: "[users.a]\nextension = \"1\"\n[users.a.sip]\npassword = \"p\"\n[users.b]\nextension = \"2\"\n[users.b.sip]\nusername = \"a\"\npassword = \"p\"\n", line: 8, column: 12, key: "users.b.sip.username", message: "SIP user name a is already used by user a" },
    Case { name: "unknown strategy", text: "[users.a]\nextension = \"1\"\n[teams.t]\nmembers = [\"a\"]\nstrategy = \"spiral\"\n", line: 5, column: 12, key: "teams.t.strategy", message: "unknown ring strategy \"spiral\"" },
    Case { name: "empty team", text: "[teams.t]\nmembers = []\n", line: 2, column: 11, key: "teams.t.members", message: "a team needs at least one member" },
    Case { name: "member listed twice", text: "[users.a]\nextension = \"1\"\n[teams.t]\nmembers = [\"a\", \"a\"]\n", line: 4, column: 17, key: "teams.t.members[1]", message: "a is listed twice" },
    Case { name: "forwarding without targets", text: "[users.a]\nextension = \"1\"\n[users.a.forwarding]\ntargets = []\n", line: 4, column: 11, key: "users.a.forwarding.targets", message: "forwarding is on but has no targets" },
    Case { name: "forwarding caller id", text: "[users.a]\nextension = \"1\"\n[users.a.forwarding]\ntargets = [\"hangup\"]\ncaller_id = \"mine\"\n", line: 5, column: 13, key: "users.a.forwarding.caller_id", message: "use remote (the caller's) or local (your own)" },
    Case { name: "duplicate device", text: "[users.a]\nextension = \"1\"\ndevices = [{ name = \"desk\" }, { name = \"desk\" }]\n", line: 3, column: 40, key: "users.a.devices[1].name", message: "device desk is listed twice" },
    Case { name: "destination URI", text: "[destinations.x]\nkind = \"menu\"\nuri = \"http://x\"\n", line: 3, column: 7, key: "destinations.x.uri", message: "\"http://x\" is not a SIP URI" },
    Case { name: "bad time zone", text: "[schedules.s]\ntimezone = \"Mars/Olympus\"\nhours = []\n", line: 2, column: 12, key: "schedules.s.timezone", message: "unknown time zone \"Mars/Olympus\"" },
    Case { name: "bad hours", text: "[schedules.s]\ntimezone = \"UTC\"\nhours = [\"mon-fri 17:00-09:00\"]\n", line: 3, column: 10, key: "schedules.s.hours[0]", message: "is not of the form \"mon-fri 09:00-17:00\"" },
    Case { name: "bad holiday", text: "[schedules.s]\ntimezone = \"UTC\"\nhours = []\nholidays = [\"25/12\"]\n", line: 4, column: 13, key: "schedules.s.holidays[0]", message: "\"25/12\" is not a date (YYYY-MM-DD)" },
    Case { name: "bad duration", text: "[profiles.x]\nnumber = 12\nstandard_length = \"a while\"\n", line: 3, column: 19, key: "profiles.x.standard_length", message: "\"a while\" is not a duration" },
    Case { name: "profile number range", text: "[profiles.x]\nnumber = 0\n", line: 2, column: 10, key: "profiles.x.number", message: "a profile number is 1 to 999" },
    Case { name: "profile without number", text: "[profiles.x]\nname = \"X\"\n", line: 1, column: 11, key: "profiles.x.number", message: "a new profile needs a number (11 or above)" },
    Case { name: "default profile number taken", text: "[profiles.x]\nnumber = 2\n", line: 1, column: 11, key: "profiles.x.number", message: "profile number 2 belongs to the default profile \"Lunch\"" },
    Case { name: "unknown availability", text: "[profiles.x]\nnumber = 12\navailability = \"asleep\"\n", line: 3, column: 16, key: "profiles.x.availability", message: "unknown status \"asleep\"" },
    Case { name: "unknown incoming handling", text: "[profiles.x]\nnumber = 12\nincoming = \"ignore\"\n", line: 3, column: 12, key: "profiles.x.incoming", message: "unknown handling \"ignore\"" },
    Case { name: "destination with uri and message", text: "[destinations.x]\nkind = \"announcement\"\nuri = \"sip:a@127.0.0.1\"\nmessage = \"hello\"\n", line: 4, column: 11, key: "destinations.x.message", message: "not both" },
    Case { name: "voicemail with a message", text: "[destinations.x]\nkind = \"voicemail\"\nmessage = \"hello\"\n", line: 3, column: 11, key: "destinations.x.message", message: "only an announcement" },
    Case { name: "destination with neither", text: "[destinations.x]\nkind = \"announcement\"\n", line: 1, column: 15, key: "destinations.x.uri", message: "needs a uri" },
    Case { name: "code without message", text: "[destinations.x]\nkind = \"announcement\"\nuri = \"sip:a@127.0.0.1\"\ncode = 486\n", line: 4, column: 8, key: "destinations.x.code", message: "only with message" },
    Case { name: "menu without prompt", text: "[destinations.m]\nkind = \"menu\"\noptions = { \"1\" = \"hangup\" }\n", line: 1, column: 15, key: "destinations.m.prompt", message: "needs a prompt" },
    Case { name: "menu without options", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\n", line: 1, column: 15, key: "destinations.m.options", message: "a menu needs options" },
    Case { name: "menu with empty options", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = {}\n", line: 4, column: 11, key: "destinations.m.options", message: "at least one option" },
    Case { name: "menu key not a key", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = { \"12\" = \"hangup\" }\n", line: 4, column: 13, key: "destinations.m.options.12", message: "\"12\" is not a key of a phone" },
    Case { name: "menu option to an unknown user", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = { \"1\" = \"user:zz\" }\n", line: 4, column: 19, key: "destinations.m.options.1", message: "unknown user \"zz\"" },
    Case { name: "menu option to an announcement that is a menu", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = { \"#\" = \"announcement:m\" }\n", line: 4, column: 19, key: "destinations.m.options.#", message: "destination \"m\" is a menu, not a announcement" },
    Case { name: "menu timeout", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = { \"1\" = \"hangup\" }\ntimeout_secs = 0\n", line: 5, column: 16, key: "destinations.m.timeout_secs", message: "0 seconds is out of range: use 1 to 60" },
    Case { name: "menu retries", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = { \"1\" = \"hangup\" }\nretries = 10\n", line: 5, column: 11, key: "destinations.m.retries", message: "10 is out of range: use 0 to 9" },
    Case { name: "menu default unknown", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = { \"1\" = \"hangup\" }\ndefault = \"team:zz\"\n", line: 5, column: 11, key: "destinations.m.default", message: "unknown team \"zz\"" },
    Case { name: "menu code with a default", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = { \"1\" = \"hangup\" }\ndefault = \"hangup\"\ncode = 486\n", line: 6, column: 8, key: "destinations.m.code", message: "when it has no default" },
    Case { name: "menu unknown key", text: "[destinations.m]\nkind = \"menu\"\nprompt = \"p\"\noptions = { \"1\" = \"hangup\" }\ngreeting = \"p\"\n", line: 5, column: 1, key: "destinations.m.greeting", message: "unknown field `greeting`" },
    Case { name: "menu keys on a media server's menu", text: "[destinations.m]\nkind = \"menu\"\nuri = \"sip:ivr@127.0.0.1\"\nprompt = \"p\"\n", line: 4, column: 10, key: "destinations.m.prompt", message: "prompt belongs to a menu the daemon serves itself" },
    Case { name: "menu keys on a voicemail", text: "[destinations.x]\nkind = \"voicemail\"\nuri = \"sip:vm@127.0.0.1\"\noptions = { \"1\" = \"hangup\" }\n", line: 4, column: 11, key: "destinations.x.options", message: "options belongs to a menu" },
    Case { name: "announce without reject", text: "[profiles.lunch]\nannounce = false\n", line: 2, column: 12, key: "profiles.lunch.announce", message: "announce is for profiles that refuse calls" },
    Case { name: "reject code", text: "[profiles.x]\nnumber = 12\nincoming = \"reject\"\nreject_code = 200\n", line: 4, column: 15, key: "profiles.x.reject_code", message: "a rejection code is 400 to 699" },
    Case { name: "trunk source", text: "[trunks.c]\nsources = [\"10.0.0.0/99\"]\n", line: 2, column: 12, key: "trunks.c.sources[0]", message: "\"10.0.0.0/99\" is not an address, network or host name (e.g. 192.0.2.0/24, sbc.carrier.example)" },
    Case { name: "trunk source neither address nor name", text: "[trunks.c]\nsources = [\"127.0.0.1\", \"sbc carrier\"]\n", line: 2, column: 25, key: "trunks.c.sources[1]", message: "\"sbc carrier\" is not an address, network or host name" },
    Case { name: "trunk source address out of range", text: "[trunks.c]\nsources = [\"192.0.2.300\"]\n", line: 2, column: 12, key: "trunks.c.sources[0]", message: "is not an address, network or host name" },
    Case { name: "trunk source name listed twice", text: "[trunks.c]\nsources = [\"sbc.carrier.example\", \"SBC.carrier.example.\"]\n", line: 2, column: 35, key: "trunks.c.sources[1]", message: "sbc.carrier.example is listed twice" },
    Case { name: "trunk without sources or credentials", text: "[trunks.c]\noutbound = [\"+44*\"]\n", line: 1, column: 9, key: "trunks.c", message: "a trunk needs source addresses, SIP credentials or an account that registers" },
    Case { name: "registrar with a user part", text: "[trunks.c]\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\nregistrar = \"sip:u@192.0.2.1\"\n", line: 6, column: 13, key: "trunks.c.account.registrar", message: "is not a registrar's SIP URI" },
    Case { name: "registrar not SIP", text: "[trunks.c]\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\nregistrar = \"http://x\"\n", line: 6, column: 13, key: "trunks.c.account.registrar", message: "is not a registrar's SIP URI" },
    Case { name: "registering without registrar or uri", text: "[trunks.c]\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\n", line: 2, column: 1, key: "trunks.c.account.registrar", message: "needs a registrar" },
    Case { name: "registering through a uri that names no registrar", text: "[trunks.c]\nuri = \"sip:192.0.2.1;transport=tls\"\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\n", line: 3, column: 1, key: "trunks.c.account.registrar", message: "names no registrar" },
    Case { name: "registration expiry out of range", text: "[trunks.c]\nuri = \"sip:192.0.2.1\"\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\nexpires = 10\n", line: 7, column: 11, key: "trunks.c.account.expires", message: "10 seconds is out of range: use 60 to 86400" },
    Case { name: "contact user not usable", text: "[trunks.c]\nuri = \"sip:192.0.2.1\"\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = true\ncontact_user = \"a@b\"\n", line: 7, column: 16, key: "trunks.c.account.contact_user", message: "is not a usable contact user" },
    Case { name: "registration keys without register", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\nuri = \"sip:192.0.2.1\"\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nexpires = 600\n", line: 7, column: 11, key: "trunks.c.account.expires", message: "add register = true" },
    Case { name: "registering trunk without sources or a uri for the account", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nregister = false\n", line: 3, column: 1, key: "trunks.c.account", message: "give the trunk a uri" },
    Case { name: "account without password", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\nuri = \"sip:127.0.0.1\"\n[trunks.c.account]\nusername = \"u\"\n", line: 4, column: 1, key: "trunks.c.account.password", message: "the account needs a password" },
    Case { name: "account user name", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\nuri = \"sip:127.0.0.1\"\n[trunks.c.account]\nusername = \"u@x\"\npassword = \"p\"\n", line: 5, column: 12, key: "trunks.c.account.username", message: "is not a usable SIP user name" },
    Case { name: "account realm", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\nuri = \"sip:127.0.0.1\"\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nrealm = \"a\\\"b\"\n", line: 7, column: 9, key: "trunks.c.account.realm", message: "cannot be a digest realm" },
    Case { name: "account without uri", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\n", line: 3, column: 1, key: "trunks.c.account", message: "give the trunk a uri" },
    Case { name: "account unknown key", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\nuri = \"sip:127.0.0.1\"\n[trunks.c.account]\nusername = \"u\"\npassword = \"p\"\nsecret = \"p\"\n", line: 7, column: 1, key: "trunks.c.account.secret", message: "unknown field `secret`" },
    Case { name: "duplicate DID", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\ndids = { \"+1\" = \"hangup\" }\n[[trunks.c.numbers]]\nnumber = \"+1\"\nto = \"hangup\"\n", line: 5, column: 10, key: "trunks.c.numbers[0]", message: "DID +1 is already routed" },
    Case { name: "duplicate DID once normalised", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\ncountry_code = \"44\"\ndids = { \"+441632960000\" = \"hangup\", \"01632 960000\" = \"hangup\" }\n", line: 4, column: 38, key: "trunks.c.dids.\"01632 960000\"", message: "DID 01632 960000 (+441632960000) is already routed" },
    Case { name: "DID that is an extension", text: "[users.a]\nextension = \"2000\"\n[trunks.c]\nsources = [\"127.0.0.1\"]\ndids = { \"2000\" = \"hangup\" }\n", line: 5, column: 10, key: "trunks.c.dids.\"2000\"", message: "DID 2000 is also the extension of user a" },
    Case { name: "trunk country code", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\ncountry_code = \"+44\"\n", line: 3, column: 16, key: "trunks.c.country_code", message: "\"+44\" is not up to 3 digits" },
    Case { name: "national numbers without a country", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\nnumber_format = \"national\"\n", line: 3, column: 17, key: "trunks.c.number_format", message: "national numbers need the trunk's country_code" },
    Case { name: "unknown number format", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\nnumber_format = \"local\"\n", line: 3, column: 17, key: "trunks.c.number_format", message: "expected \"e164\", \"national\" or \"international\"" },
    Case { name: "trunk caller id", text: "[trunks.c]\nsources = [\"127.0.0.1\"]\ncaller_id = \"reception\"\n", line: 3, column: 13, key: "trunks.c.caller_id", message: "\"reception\" is not a telephone number" },
    Case { name: "unknown status", text: "[statuses.sleepy]\ndirect = \"ring\"\n", line: 1, column: 11, key: "statuses.sleepy", message: "unknown status \"sleepy\"" },
    Case { name: "unknown status effect", text: "[statuses.away]\ndirect = \"vanish\"\n", line: 2, column: 10, key: "statuses.away.direct", message: "unknown effect \"vanish\"" },
    Case { name: "defined twice across files", text: "[users.vm]\nextension = \"9\"\n[destinations.vm]\nkind = \"voicemail\"\nuri = \"sip:x@y\"\n", line: 3, column: 15, key: "destinations.vm", message: "destination vm is defined twice" },
    Case { name: "routing loop", text: "[users.a]\nextension = \"1\"\nno_answer = \"user:b\"\n[users.b]\nextension = \"2\"\nno_answer = \"user:a\"\n", line: 0, column: 0, key: "users.b.no_answer", message: "routing loop: users.a.no_answer -> users.b.no_answer" },
];

#[test]
fn every_validation_error_has_its_position_and_message() {
    let mut failures = Vec::new();
    for c in CASES {
        let result = Policy::from_sources(&[
            Source {
                name: "base.toml".into(),
                text: BASE.into(),
            },
            Source {
                name: "case.toml".into(),
                text: c.text.into(),
            },
        ]);
        let Err(errors) = result else {
            failures.push(format!("{}: accepted", c.name));
            continue;
        };
        let found = errors.iter().any(|d| {
            d.key == c.key
                && d.line == c.line
                && d.column == c.column
                && d.message.contains(c.message)
                && (d.line == 0 || d.file == "case.toml")
        });
        if !found {
            failures.push(format!(
                "{}: expected {}:{} {} {:?}, got\n{errors}",
                c.name, c.line, c.column, c.key, c.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
