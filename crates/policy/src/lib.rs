//! Switchboard's routing policy: the operator's TOML description of people, teams,
//! destinations, profiles, schedules and trunks; its validation; and the planner
//! that turns one incoming call into a route plan.
//!
//! The crate is pure: it reads text handed to it (or files, in [`Policy::load_path`]) and
//! knows nothing of SIP or of the daemon.

pub mod diagnostics;
pub mod load;
pub mod model;
pub mod numbers;
pub mod plan;
pub mod profile;
pub mod view;

pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use load::{
    is_email, parse_duration, parse_host_name, parse_network, parse_target, read_sources,
    source_files, Context, Source,
};
pub use model::*;
pub use numbers::{NumberFormat, NumberPlan};
pub use plan::{
    plan, Action, CallerIdRule, Leg, LegTarget, LocalTime, Menu, MenuOption, Message, Next,
    ProfileMessage, RoutePlan, Step, VoicemailReason,
};
pub use profile::{build_profile, number_problem, ProfileDraft, ProfileProblem};
pub use view::{Call, Caller, DeviceView, GroupMemory, PersonView, View, ViewSource};
