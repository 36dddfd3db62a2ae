//! What scripts see: thin bindings that convert between Rhai values and `core`/`sys`.

pub mod backups;
pub mod browser;
pub mod env;
pub mod error;
pub mod exec;
pub mod fs;
pub mod history;
pub mod http;
pub mod metrics;
pub mod opts;
pub mod phase;
pub mod process;
pub mod releases;
pub mod remote;
pub mod retry;
pub mod syntax;
pub mod text;

use rhai::{exported_module, Engine};

use crate::core::options::OptionList;
use crate::host::Bindings;

/// The script API as a host registers it: every function and type, with the option names
/// of the functions that take an option map.
pub fn bindings() -> Bindings<'static> {
    Bindings {
        register: &register_all,
        option_lists: OPTION_LISTS,
    }
}

/// Registers every script-facing function and type on an engine.
pub fn register_all(engine: &mut Engine) {
    engine.register_type_with_name::<exec::ProcessHandle>("Process");
    engine.register_global_module(exported_module!(exec::exec_api).into());
    syntax::register_call(engine, "spawn", 1, 2, exec::spawn_syntax);
    syntax::register_call(engine, "var", 1, 2, env::var_syntax);
    engine.register_global_module(exported_module!(retry::retry_api).into());
    engine.register_global_module(exported_module!(remote::remote_api).into());
    engine.register_global_module(exported_module!(env::env_api).into());
    engine.register_global_module(exported_module!(phase::phase_api).into());
    engine.register_static_module("score", exported_module!(phase::score_api).into());
    engine.register_global_module(exported_module!(metrics::metrics_api).into());
    engine.register_static_module(
        "prometheus",
        exported_module!(metrics::prometheus_api).into(),
    );
    engine.register_static_module("http", exported_module!(http::http_api).into());
    engine.register_static_module("browser", exported_module!(browser::browser_api).into());
    engine.register_static_module("log", exported_module!(env::log_api).into());
    engine.register_static_module("fs", exported_module!(fs::fs_api).into());
    engine.register_static_module(
        "release_journal",
        exported_module!(releases::journal_api).into(),
    );
    engine.register_static_module("record", exported_module!(releases::record_api).into());
    engine.register_static_module("backups", exported_module!(backups::backups_api).into());
    engine.register_static_module("process", exported_module!(process::process_api).into());
    engine.register_global_module(exported_module!(text::text_api).into());
    engine.register_static_module("history", exported_module!(history::history_api).into());
}

const fn list(
    func: &'static str,
    argc: usize,
    arg: usize,
    known: &'static [&'static str],
) -> OptionList {
    OptionList {
        func,
        argc,
        arg,
        known,
        nested: &[],
    }
}

/// Every native function that takes an option map, with the list of option names its
/// binding uses (one list per function, shared by the runtime and the static check).
pub const OPTION_LISTS: &[OptionList] = &[
    list("exec", 2, 1, exec::EXEC_OPTS),
    list("sh", 2, 1, exec::EXEC_OPTS),
    list("spawn", 2, 1, exec::SPAWN_OPTS),
    list("http::get", 2, 1, http::REQUEST_OPTS),
    list("http::head", 2, 1, http::REQUEST_OPTS),
    list("http::post", 2, 1, http::REQUEST_OPTS),
    list("http::put", 2, 1, http::REQUEST_OPTS),
    list("http::patch", 2, 1, http::REQUEST_OPTS),
    list("http::delete", 2, 1, http::REQUEST_OPTS),
    OptionList {
        func: "http::wait_healthy",
        argc: 2,
        arg: 1,
        known: http::WAIT_OPTS,
        nested: &[("expect", http::EXPECT_KEYS)],
    },
    list("browser::visit", 2, 1, browser::VISIT_OPTS),
    list("browser::check", 2, 1, browser::CHECK_OPTS),
    list("retry", 2, 0, retry::RETRY_OPTS),
    list("sample", 2, 1, metrics::SAMPLE_OPTS),
    list("monitor", 2, 1, metrics::MONITOR_OPTS),
    list("collect", 2, 1, metrics::COLLECT_OPTS),
    list("phase", 3, 1, phase::PHASE_OPTS),
    list("on", 3, 1, remote::ON_OPTS),
    list("history::runs", 1, 0, history::RUNS_OPTIONS),
];
